/** TileContinuity: a reconnecting participant keeps its tile, only for the owner of the identity key. */
import { describe, expect, it } from "vitest";

import { PROOF_WAIT_MS, RECONNECT_GRACE_MS, TileContinuity } from "../src/lib/continuity";

const ALICE = Uint8Array.of(4, 1, 2, 3);
const MALLORY = Uint8Array.of(4, 9, 9, 9);

describe("tiles across a reconnect", () => {
  it("hands a dropped participant's tile to the newcomer that proves the same identity", () => {
    const tiles = new TileContinuity();
    tiles.joined("old", 0);
    tiles.left("old", true, ALICE, "Alice", 7, 1000);
    expect(tiles.ghosts(1000)).toEqual([
      { participantId: "old", tileKey: "old", displayName: "Alice", camera: 7 },
    ]);
    tiles.joined("new", 1500);
    expect(tiles.waiting("new", true, false, true, 1500)).toBe(true);
    expect(tiles.proven("new", MALLORY, 1600)).toBe(false);
    expect(tiles.proven("new", ALICE, 1600)).toBe(true);
    expect(tiles.tileKey("new")).toBe("old");
    expect(tiles.ghosts(1600)).toEqual([]);
    expect(tiles.waiting("new", true, true, true, 1600)).toBe(false);
    // A second reconnect keeps the same tile.
    tiles.left("new", true, ALICE, "Alice", 9, 2000);
    tiles.joined("newer", 2100);
    expect(tiles.proven("newer", ALICE, 2200)).toBe(true);
    expect(tiles.tileKey("newer")).toBe("old");
  });

  it("leaves no ghost for a goodbye or an unproven identity, and lets ghosts expire", () => {
    const tiles = new TileContinuity();
    tiles.left("bye", false, ALICE, "Alice", null, 0);
    tiles.left("anon", true, null, "Bob", null, 0);
    expect(tiles.ghosts(0)).toEqual([]);
    tiles.left("lost", true, ALICE, "Alice", null, 0);
    expect(tiles.ghosts(RECONNECT_GRACE_MS - 1)).toHaveLength(1);
    expect(tiles.ghosts(RECONNECT_GRACE_MS)).toEqual([]);
    expect(tiles.proven("late", ALICE, RECONNECT_GRACE_MS)).toBe(false);
  });

  it("supersedes a participant the server still lists when its newer id proves the same identity", () => {
    const tiles = new TileContinuity();
    tiles.joined("old", 0);
    expect(tiles.proven("old", ALICE, 0)).toBe(false);
    tiles.joined("new", 500);
    expect(tiles.proven("new", ALICE, 600)).toBe(true);
    expect(tiles.isSuperseded("old")).toBe(true);
    expect(tiles.tileKey("new")).toBe("old");
    // When the server finally drops the old id it leaves no ghost: its tile is already taken.
    tiles.left("old", true, ALICE, "Alice", null, 5000);
    expect(tiles.ghosts(5000)).toEqual([]);
    expect(tiles.isSuperseded("old")).toBe(false);
  });

  it("holds back only a recent, unproven, encrypting newcomer whose name is already shown", () => {
    const tiles = new TileContinuity();
    tiles.joined("new", 100);
    expect(tiles.waiting("new", true, false, true, 100)).toBe(true);
    expect(tiles.waiting("new", false, false, true, 100)).toBe(false);
    expect(tiles.waiting("new", true, true, true, 100)).toBe(false);
    expect(tiles.waiting("new", true, false, false, 100)).toBe(false);
    expect(tiles.waiting("new", true, false, true, 100 + PROOF_WAIT_MS)).toBe(false);
    expect(tiles.waiting("unknown", true, false, true, 100)).toBe(false);
    tiles.left("lost", true, ALICE, "Alice", null, 0);
    tiles.reset();
    expect(tiles.ghosts(200)).toEqual([]);
  });
});
