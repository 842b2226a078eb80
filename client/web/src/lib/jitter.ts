/**
 * A playout buffer for one audio track: packets arrive as datagrams, out of order, late or not at all;
 * the decoder wants them in order at a steady pace.
 *
 * Free of I/O and clocks: callers pass `nowMs` (a monotonic clock, e.g. `performance.now()`). The first
 * packet anchors the schedule: it plays `targetDelayMs` after it arrived, and each following sequence
 * number `frameDurationMs` later. `pop(nowMs)` returns what is due, in order; a sequence number that is due
 * but missing while later packets are waiting comes out as `lost` (the decoder conceals it). When the
 * buffer runs dry (an underrun, or the sender paused), the schedule stops and the next packet re-anchors it.
 */

export interface JitterConfig {
  /** Delay between the first packet's arrival and its playout: the jitter the buffer absorbs. */
  targetDelayMs: number;
  /** Audio carried per packet (20 ms for the browser's Opus encoder). */
  frameDurationMs: number;
  /** Largest number of sequence numbers held ahead of playout; a packet further ahead re-anchors. */
  capacity: number;
}

export type Playout =
  { kind: "frame"; seq: number; captureUs: bigint; payload: Uint8Array } | { kind: "lost"; seq: number };

export type PushResult = "accepted" | "late" | "duplicate" | "reanchored";

export interface JitterStats {
  /** Packets stored for playout, including those that re-anchored the schedule. */
  accepted: number;
  late: number;
  duplicate: number;
  lost: number;
  /** Times the schedule was restarted (underrun followed by new packets, or a jump past capacity). */
  reanchored: number;
}

export const DEFAULT_JITTER: JitterConfig = { targetDelayMs: 60, frameDurationMs: 20, capacity: 50 };

interface Packet {
  captureUs: bigint;
  payload: Uint8Array;
}

export class JitterBuffer {
  private readonly packets = new Map<number, Packet>();
  /** The next sequence number to play; null before the first packet. */
  private nextSeq: number | null = null;
  /** When `nextSeq` is due, or null while stopped after an underrun. */
  private dueMs: number | null = null;
  readonly stats: JitterStats = { accepted: 0, late: 0, duplicate: 0, lost: 0, reanchored: 0 };

  constructor(private readonly config: JitterConfig = DEFAULT_JITTER) {}

  push(seq: number, captureUs: bigint, payload: Uint8Array, nowMs: number): PushResult {
    if (this.nextSeq !== null && seq < this.nextSeq) {
      this.stats.late++;
      return "late";
    }
    if (this.packets.has(seq)) {
      this.stats.duplicate++;
      return "duplicate";
    }
    let result: PushResult = "accepted";
    if (this.nextSeq === null || this.dueMs === null || seq - this.nextSeq >= this.config.capacity) {
      if (this.nextSeq !== null) {
        this.stats.reanchored++;
        result = "reanchored";
      }
      this.packets.clear();
      this.nextSeq = seq;
      this.dueMs = nowMs + this.config.targetDelayMs;
    }
    this.packets.set(seq, { captureUs, payload });
    this.stats.accepted++;
    return result;
  }

  /** Everything due by `nowMs`, in sequence order. */
  pop(nowMs: number): Playout[] {
    const out: Playout[] = [];
    while (this.nextSeq !== null && this.dueMs !== null && this.dueMs <= nowMs) {
      if (this.packets.size === 0) {
        this.dueMs = null;
        break;
      }
      const seq = this.nextSeq;
      const packet = this.packets.get(seq);
      if (packet === undefined) {
        this.stats.lost++;
        out.push({ kind: "lost", seq });
      } else {
        this.packets.delete(seq);
        out.push({ kind: "frame", seq, ...packet });
      }
      this.nextSeq = seq + 1;
      this.dueMs += this.config.frameDurationMs;
    }
    return out;
  }

  /** Packets waiting for their turn. */
  get size(): number {
    return this.packets.size;
  }
}
