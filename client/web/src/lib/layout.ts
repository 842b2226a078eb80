/**
 * The meeting grid's geometry: how many columns `count` tiles of a fixed aspect ratio need to be as large as
 * possible inside a `width` x `height` area (on a tie, more columns: side by side reads better than stacked),
 * and how large each tile then is. Free of the DOM, so tested.
 */

export interface GridFit {
  columns: number;
  rows: number;
  tileWidth: number;
  tileHeight: number;
}

export function fitGrid(count: number, width: number, height: number, gap: number, aspect = 16 / 9): GridFit {
  let best: GridFit = { columns: 1, rows: 1, tileWidth: 0, tileHeight: 0 };
  const tiles = Math.max(1, count);
  for (let columns = 1; columns <= tiles; columns++) {
    const rows = Math.ceil(tiles / columns);
    const cellWidth = (width - gap * (columns - 1)) / columns;
    const cellHeight = (height - gap * (rows - 1)) / rows;
    const tileWidth = Math.max(0, Math.min(cellWidth, cellHeight * aspect));
    if (tileWidth >= best.tileWidth) best = { columns, rows, tileWidth, tileHeight: tileWidth / aspect };
  }
  return best;
}
