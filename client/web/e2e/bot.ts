/**
 * Runs `darktower bot` (the Python synthetic participant) as a child process and reads its report: the last
 * line it prints with `--json` is one JSON object (client/python/bot.py).
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface BotReport {
  participant_id: string;
  sent: { audio: number; video: number };
  /** Frames received, by publishing participant id. */
  received: Record<string, { audio: number; video: number } | undefined>;
  latency_ms: { p50: number | null; p99: number | null };
  /** With `--e2ee`: the key manager's counts (frames decrypted, taken as plaintext, refused by kind). */
  e2ee: {
    decrypted: number;
    plaintext: number;
    refused_frames: Record<string, number>;
    refused_key_messages: Record<string, number>;
    rotations: number;
  } | null;
}

export interface RunningBot {
  /** Resolves with the report once the bot has left (after `durationS`), rejects if it failed. */
  report: Promise<BotReport>;
  output: string[];
}

/** Starts the bot; `e2ee`: it encrypts its media end to end and decrypts everyone's (`--e2ee`). */
export function startBot(
  serverUrl: string,
  meetingId: string,
  name: string,
  durationS: number,
  e2ee = false,
): RunningBot {
  const executable = process.env.DARKTOWER ?? "../../.venv/bin/darktower";
  const args = ["bot", "--server", serverUrl, "--meeting", meetingId, "--name", name];
  if (e2ee) args.push("--e2ee");
  const child = spawn(executable, [...args, "--duration", String(durationS), "--json"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const stdout: string[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    stdout.push(line);
    output.push(line);
  });
  createInterface({ input: child.stderr }).on("line", (line) => output.push(line));
  const report = new Promise<BotReport>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      const last = stdout.at(-1);
      if (code !== 0 || last === undefined) {
        reject(new Error(`darktower bot exited with ${String(code)}:\n${output.join("\n")}`));
        return;
      }
      try {
        resolve(JSON.parse(last) as BotReport);
      } catch (error) {
        reject(new Error(`darktower bot's last line is not JSON: ${last}`, { cause: error }));
      }
    });
  });
  return { report, output };
}
