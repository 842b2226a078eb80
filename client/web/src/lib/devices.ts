/**
 * Cameras, microphones and speakers: capturing one, the lists for the pickers, and the choices a person
 * made, kept in localStorage so the next meeting starts with the same devices.
 */

export interface DeviceChoice {
  camera: string;
  microphone: string;
  speaker: string;
}

export interface DeviceLists {
  cameras: MediaDeviceInfo[];
  microphones: MediaDeviceInfo[];
  speakers: MediaDeviceInfo[];
}

const KEY = "darktower.devices";
const ALIASES = new Set(["", "default", "communications"]);
const NAME_KEY = "darktower.displayName";

export async function listDevices(): Promise<DeviceLists> {
  const devices = await navigator.mediaDevices.enumerateDevices();
  // "default" and "communications" are Chromium's aliases of real devices; the pickers offer "System default".
  const ofKind = (kind: MediaDeviceKind) =>
    devices.filter((device) => device.kind === kind && !ALIASES.has(device.deviceId));
  return {
    cameras: ofKind("videoinput"),
    microphones: ofKind("audioinput"),
    speakers: ofKind("audiooutput"),
  };
}

/** A device's name for the picker; browsers hide labels until a capture permission is granted. */
export function deviceLabel(device: MediaDeviceInfo, index: number): string {
  if (device.label !== "") return device.label;
  const noun =
    device.kind === "videoinput" ? "Camera" : device.kind === "audioinput" ? "Microphone" : "Speaker";
  return `${noun} ${index + 1}`;
}

export function savedDevices(): DeviceChoice {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) ?? "{}") as Partial<DeviceChoice>;
    return {
      camera: typeof saved.camera === "string" ? saved.camera : "",
      microphone: typeof saved.microphone === "string" ? saved.microphone : "",
      speaker: typeof saved.speaker === "string" ? saved.speaker : "",
    };
  } catch {
    return { camera: "", microphone: "", speaker: "" };
  }
}

export function saveDevices(choice: DeviceChoice): void {
  localStorage.setItem(KEY, JSON.stringify(choice));
}

export function savedName(): string {
  return localStorage.getItem(NAME_KEY) ?? "";
}

export function saveName(name: string): void {
  localStorage.setItem(NAME_KEY, name);
}

export async function captureCamera(deviceId: string): Promise<MediaStreamTrack> {
  const stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(deviceId) });
  const [track] = stream.getVideoTracks();
  if (track === undefined) throw new Error("the camera gave no video track");
  return track;
}

export async function captureMicrophone(deviceId: string): Promise<MediaStreamTrack> {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: microphoneConstraints(deviceId) });
  const [track] = stream.getAudioTracks();
  if (track === undefined) throw new Error("the microphone gave no audio track");
  return track;
}

export function cameraConstraints(deviceId: string): MediaTrackConstraints {
  return {
    width: { ideal: 640 },
    height: { ideal: 360 },
    frameRate: { ideal: 30 },
    ...(deviceId === "" ? {} : { deviceId: { exact: deviceId } }),
  };
}

export function microphoneConstraints(deviceId: string): MediaTrackConstraints {
  return {
    channelCount: 1,
    echoCancellation: true,
    noiseSuppression: true,
    ...(deviceId === "" ? {} : { deviceId: { exact: deviceId } }),
  };
}
