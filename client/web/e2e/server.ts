/**
 * Starts `darktower serve` on free ports in a scratch data directory and waits until it says it is ready.
 * `DARKTOWER` names the executable (ops/web.sh passes the repository's .venv one).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface RunningServer {
  /** The control plane's base URL, http://127.0.0.1:<port>. */
  httpUrl: string;
  output: string[];
  stop: () => Promise<void>;
}

const READY = "darktower: ready";

export async function startServer(timeoutMs = 30_000): Promise<RunningServer> {
  const executable = process.env.DARKTOWER ?? "../../.venv/bin/darktower";
  const dataDir = mkdtempSync(join(tmpdir(), "darktower-e2e-"));
  const child = spawn(executable, ["serve", "--http-port", "0", "--quic-port", "0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const stop = () => stopServer(child, dataDir);
  try {
    const httpUrl = await new Promise<string>((resolve, reject) => {
      let httpUrl: string | null = null;
      const timer = setTimeout(() => {
        reject(new Error(`no "${READY}" within ${timeoutMs} ms:\n${output.join("\n")}`));
      }, timeoutMs);
      const onLine = (line: string) => {
        output.push(line);
        httpUrl ??= /http:\/\/127\.0\.0\.1:\d+/.exec(line)?.[0] ?? null;
        if (line.includes(READY) && httpUrl !== null) {
          clearTimeout(timer);
          resolve(httpUrl);
        }
      };
      createInterface({ input: child.stdout }).on("line", onLine);
      createInterface({ input: child.stderr }).on("line", onLine);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(
          new Error(`darktower serve exited with ${String(code)} before it was ready:\n${output.join("\n")}`),
        );
      });
    });
    return { httpUrl, output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function stopServer(child: ChildProcess, dataDir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        resolve();
      });
    });
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
