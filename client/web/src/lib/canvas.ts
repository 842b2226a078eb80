/**
 * Drawing received video onto a tile's canvas: decoded frames as they are, and the bot's synthetic media
 * as a moving test card (colour bars, a sweeping bar and the frame number), so a bot's tile is visibly live.
 */
import type { VideoRenderer } from "./receiver";

const CARD_WIDTH = 640;
const CARD_HEIGHT = 360;
const BARS = ["#c0c0c0", "#c0c000", "#00c0c0", "#00c000", "#c000c0", "#c00000", "#0000c0"];
/** Frames per group in the bot's media (30 fps, a keyframe every 2 s): positions the sweep. */
const FRAMES_PER_GROUP = 60;

export function canvasRenderer(canvas: HTMLCanvasElement, label: () => string): VideoRenderer<VideoFrame> {
  const context = canvas.getContext("2d", { alpha: false });
  return {
    draw: (frame) => {
      if (context === null) return;
      if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
        canvas.width = frame.displayWidth;
        canvas.height = frame.displayHeight;
      }
      context.drawImage(frame, 0, 0);
    },
    drawTestCard: (group, objectSeq) => {
      if (context === null) return;
      if (canvas.width !== CARD_WIDTH || canvas.height !== CARD_HEIGHT) {
        canvas.width = CARD_WIDTH;
        canvas.height = CARD_HEIGHT;
      }
      drawTestCard(context, label(), group * FRAMES_PER_GROUP + objectSeq);
    },
  };
}

function drawTestCard(context: CanvasRenderingContext2D, label: string, frame: number): void {
  const barWidth = CARD_WIDTH / BARS.length;
  BARS.forEach((colour, i) => {
    context.fillStyle = colour;
    context.fillRect(i * barWidth, 0, barWidth + 1, CARD_HEIGHT * 0.62);
  });
  context.fillStyle = "#101018";
  context.fillRect(0, CARD_HEIGHT * 0.62, CARD_WIDTH, CARD_HEIGHT * 0.38);
  const sweep = ((frame % 90) / 90) * CARD_WIDTH;
  context.fillStyle = "rgba(255, 255, 255, 0.85)";
  context.fillRect(sweep - 6, 0, 12, CARD_HEIGHT * 0.62);
  context.fillStyle = "#e8e8ee";
  context.font = "600 34px system-ui, sans-serif";
  context.textAlign = "center";
  context.fillText(label, CARD_WIDTH / 2, CARD_HEIGHT * 0.74);
  context.font = "20px ui-monospace, monospace";
  context.fillStyle = "#9aa0b4";
  context.fillText(`synthetic media · frame ${frame}`, CARD_WIDTH / 2, CARD_HEIGHT * 0.83);
}
