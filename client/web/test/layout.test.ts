/** fitGrid: the meeting grid's columns and tile size. */
import { describe, expect, it } from "vitest";

import { fitGrid } from "../src/lib/layout";

describe("fitGrid", () => {
  it("gives one tile the whole width when the area is wide enough", () => {
    expect(fitGrid(1, 1600, 900, 10)).toEqual({ columns: 1, rows: 1, tileWidth: 1600, tileHeight: 900 });
  });

  it("puts two tiles side by side in a landscape area and stacks them in a portrait one", () => {
    expect(fitGrid(2, 1600, 900, 0)).toMatchObject({ columns: 2, rows: 1, tileWidth: 800 });
    expect(fitGrid(2, 400, 900, 0)).toMatchObject({ columns: 1, rows: 2, tileWidth: 400 });
  });

  it("chooses a 2x2 grid for four tiles and 3 columns for seven in a 16:9 area", () => {
    expect(fitGrid(4, 1600, 900, 0)).toMatchObject({ columns: 2, rows: 2, tileWidth: 800 });
    expect(fitGrid(7, 1600, 900, 0)).toMatchObject({ columns: 3, rows: 3 });
  });

  it("accounts for the gaps and never returns a negative size", () => {
    expect(fitGrid(2, 1610, 900, 10).tileWidth).toBe(800);
    expect(fitGrid(3, 0, 0, 10).tileWidth).toBe(0);
  });
});
