/**
 * One participant in a meeting, across connections: joins through the control plane, publishes the local
 * camera, microphone and screen, receives everyone else, and reconnects when the transport drops.
 *
 * A `Connection` is one WebTransport session; the session outlives it. When a connection ends without
 * `leave()` the session shows a reconnecting state, waits a back-off with jitter, asks the control plane for a
 * fresh grant, joins again, publishes its tracks again (new track ids, same encoders, starting at a keyframe)
 * and subscribes to everything there is. Receivers of tracks that survive the gap are kept (other publishers'
 * track ids do not change), so tiles pick up where they were at the next keyframe.
 *
 * Mute and camera-off unpublish the track, so everyone else sees the state change (TrackUnpublished) and no
 * bandwidth is spent; unmuting publishes again. Screen sharing is a second video track labelled "screen".
 * The UI sees a `MeetingView` through `onChange` and attaches renderers to tracks by id.
 */
import { joinMeeting, type JoinGrant } from "./api";
import { backoffDelay } from "./backoff";
import { Connection } from "./connection";
import {
  countFor,
  debugCounters,
  describe,
  recordError,
  recordLatency,
  setHooks,
  type SessionState,
} from "./debug";
import type { FrameHeader } from "./frame";
import { TrackMeter, type TrackFigures } from "./meter";
import { AudioPlayout } from "./playout";
import { captureCamera, captureMicrophone } from "./devices";
import { AUDIO_CODEC, AudioPublisher, VideoPublisher } from "./publisher";
import { AudioReceiver, VideoReceiver, type ReceiverEvents, type VideoRenderer } from "./receiver";
import { Roster, SCREEN_LABEL } from "./roster";
import type { SignalingEvent } from "./signaling";
import { SpeakerDetector } from "./speaker";
import {
  pickVideoCodec,
  webCodecsAudioDecoder,
  webCodecsVideoDecoder,
  type VideoCodecName,
} from "./webcodecs";
import { TrackKind, type Track } from "../gen/signaling_pb";

export type Role = "camera" | "microphone" | "screen";

/** Someone else in the meeting, as their tile and the participant list show them. */
export interface PeerView {
  participantId: string;
  displayName: string;
  /** Track ids of their camera and screen (null: off), for `attachVideo` and `figures`. */
  camera: number | null;
  screen: number | null;
  muted: boolean;
  speaking: boolean;
}

export interface SelfView {
  participantId: string;
  displayName: string;
  muted: boolean;
  camera: MediaStreamTrack | null;
  screen: MediaStreamTrack | null;
  speaking: boolean;
}

export interface MeetingView {
  state: SessionState;
  self: SelfView;
  peers: PeerView[];
  activeSpeaker: string | null;
  /** While reconnecting or after failing: what happened, for the banner. */
  problem: string | null;
  reconnectAttempt: number;
}

export interface LocalMedia {
  camera: MediaStreamTrack | null;
  microphone: MediaStreamTrack | null;
}

const MAX_RECONNECT_ATTEMPTS = 12;
const AUDIO_TICK_MS = 10;
const SPEAKER_TICK_MS = 200;
const SELF = "self";

type Publisher = VideoPublisher | AudioPublisher;

export class MeetingSession {
  private readonly roster = new Roster();
  private readonly speakers = new SpeakerDetector();
  private readonly publishers = new Map<Role, Publisher>();
  /** The server's track id of each published role on the current connection. */
  private readonly published = new Map<Role, number>();
  private readonly videoReceivers = new Map<number, VideoReceiver<VideoFrame>>();
  private readonly audioReceivers = new Map<number, AudioReceiver<AudioData>>();
  private readonly renderers = new Map<number, VideoRenderer<VideoFrame>>();
  private readonly meters = new Map<number, TrackMeter>();
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private connection: Connection | null = null;
  private epoch = 0;
  private state: SessionState = "connecting";
  private participantId = "";
  private problem: string | null = null;
  private reconnectAttempt = 0;
  private reconnecting = false;
  private muted: boolean;
  private lastSpeakerView = "";

  private constructor(
    private readonly meetingId: string,
    private readonly displayName: string,
    private readonly media: LocalMedia,
    private readonly videoCodec: string,
    private readonly playout: AudioPlayout,
    private readonly onChange: (view: MeetingView) => void,
  ) {
    this.muted = media.microphone === null;
    this.timers.push(
      setInterval(() => {
        const now = performance.now();
        for (const receiver of this.audioReceivers.values()) receiver.tick(now);
      }, AUDIO_TICK_MS),
      setInterval(() => {
        this.emitIfSpeakersChanged();
      }, SPEAKER_TICK_MS),
    );
  }

  /** Joins `meetingId` as `displayName`, publishing `media`; resolves once joined the first time. */
  static async start(
    meetingId: string,
    displayName: string,
    media: LocalMedia,
    codec: VideoCodecName,
    onChange: (view: MeetingView) => void,
  ): Promise<MeetingSession> {
    const counters = debugCounters();
    counters.state = "connecting";
    const settings = media.camera?.getSettings();
    const videoCodec = await pickVideoCodec(codec, settings?.width ?? 1280, settings?.height ?? 720);
    counters.videoCodec = videoCodec;
    const playout = await AudioPlayout.create();
    const session = new MeetingSession(meetingId, displayName, media, videoCodec, playout, onChange);
    if (media.camera !== null) session.publishers.set("camera", new VideoPublisher(media.camera, videoCodec));
    if (media.microphone !== null)
      session.publishers.set("microphone", session.newMicrophone(media.microphone));
    setHooks({
      killTransport: () => {
        session.connection?.drop("the transport was killed (test hook)");
      },
      corruptNextKeyframe: () => {
        const camera = session.publishers.get("camera");
        if (camera instanceof VideoPublisher) camera.corruptNextKeyframe();
      },
    });
    try {
      await session.connect(await joinMeeting(meetingId, displayName));
    } catch (error) {
      session.stop("failed", describe(error));
      throw error;
    }
    return session;
  }

  /** Shows track `trackId`'s video through `renderer` (null: nowhere). */
  attachVideo(trackId: number, renderer: VideoRenderer<VideoFrame> | null): void {
    if (renderer === null) this.renderers.delete(trackId);
    else this.renderers.set(trackId, renderer);
    this.videoReceivers.get(trackId)?.attach(renderer);
  }

  /** Live figures of a received track, for the stats overlay. */
  figures(trackId: number): TrackFigures | null {
    return this.meters.get(trackId)?.figures(Date.now()) ?? null;
  }

  /** Starts the audio output if the autoplay policy held it; call from a user gesture. */
  resumeAudio(): void {
    this.playout.resume();
  }

  /** Mutes (unpublishes the microphone) or unmutes (publishes it again, from `deviceId` if it was released). */
  async setMuted(muted: boolean, deviceId = ""): Promise<void> {
    if (muted === this.muted) return;
    this.muted = muted;
    if (muted) {
      await this.unpublish("microphone");
    } else {
      const kept = this.media.microphone;
      const track = kept?.readyState === "live" ? kept : await captureMicrophone(deviceId);
      this.media.microphone = track;
      this.publishers.set("microphone", this.newMicrophone(track));
      await this.publish("microphone");
    }
    this.emit();
  }

  /** Turns the camera off (unpublished, released) or on again (captured from `deviceId`, published). */
  async setCamera(on: boolean, deviceId = ""): Promise<void> {
    if (on === this.publishers.has("camera")) return;
    if (on) {
      const track = await captureCamera(deviceId);
      this.media.camera = track;
      this.publishers.set("camera", new VideoPublisher(track, this.videoCodec));
      this.emit();
      await this.publish("camera");
    } else {
      await this.unpublish("camera");
      this.media.camera?.stop();
      this.media.camera = null;
    }
    this.emit();
  }

  /** Switches to another camera (when the camera is on) without a new publication. */
  async switchCamera(deviceId: string): Promise<void> {
    const publisher = this.publishers.get("camera");
    if (!(publisher instanceof VideoPublisher)) return;
    const track = await captureCamera(deviceId);
    const previous = publisher.mediaTrack;
    publisher.replaceTrack(track);
    previous.stop();
    this.media.camera = track;
    this.emit();
  }

  /** Switches to another microphone; a muted session uses it when unmuted. */
  async switchMicrophone(deviceId: string): Promise<void> {
    const track = await captureMicrophone(deviceId);
    const previous = this.media.microphone;
    this.media.microphone = track;
    const publisher = this.publishers.get("microphone");
    if (publisher instanceof AudioPublisher) publisher.replaceTrack(track);
    previous?.stop();
  }

  setSpeaker(deviceId: string): Promise<void> {
    return this.playout.setOutput(deviceId);
  }

  async startScreenShare(): Promise<void> {
    if (this.publishers.has("screen")) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    const [track] = stream.getVideoTracks();
    if (track === undefined) return;
    track.addEventListener("ended", () => {
      void this.stopScreenShare();
    });
    this.publishers.set("screen", new VideoPublisher(track, this.videoCodec));
    this.emit();
    await this.publish("screen");
  }

  async stopScreenShare(): Promise<void> {
    const publisher = this.publishers.get("screen");
    if (publisher === undefined) return;
    await this.unpublish("screen");
    publisher.mediaTrack.stop();
    this.emit();
  }

  async leave(): Promise<void> {
    if (this.state === "left") return;
    const connection = this.connection;
    this.stop("left", null);
    await connection?.leave();
  }

  // --- connections -------------------------------------------------------------------------------------

  private async connect(grant: JoinGrant): Promise<void> {
    const epoch = ++this.epoch;
    const current = () => epoch === this.epoch && this.state !== "left" && this.state !== "failed";
    let early: SignalingEvent[] | null = [];
    const connection = await Connection.open(grant, {
      event: (event) => {
        if (!current()) return;
        if (early === null) this.onEvent(event);
        else early.push(event);
      },
      audio: (header, payload) => {
        if (current()) this.onAudio(header, payload);
      },
      video: (header, payload) => {
        if (current()) this.onVideo(header, payload);
      },
      closed: (reason, retry) => {
        if (current()) this.onClosed(reason, retry);
      },
    });
    if (!current()) {
      connection.drop("superseded");
      return;
    }
    this.connection = connection;
    let joined;
    try {
      joined = await connection.join(grant.token);
    } catch (error) {
      this.epoch++;
      this.connection = null;
      connection.drop("join failed");
      throw error;
    }
    this.participantId = joined.participantId;
    const counters = debugCounters();
    counters.participantId = joined.participantId;
    counters.names[joined.participantId] = this.displayName;
    for (const peer of joined.roster) counters.names[peer.participantId] = peer.displayName;
    const changes = this.roster.joined(joined);
    for (const track of changes.removed) this.closeTrack(track);
    for (const track of changes.added) this.openTrack(track);
    const pending = early;
    early = null;
    for (const event of pending) this.onEvent(event);
    this.published.clear();
    await Promise.all([...this.publishers.keys()].map((role) => this.publish(role)));
    if (this.connection !== connection) throw new Error("the connection closed while joining");
    for (const track of this.allTracks()) this.subscribe(track.trackId);
    this.state = "joined";
    counters.state = "joined";
    this.problem = null;
    this.reconnectAttempt = 0;
    this.emit();
  }

  private onClosed(reason: string, retry: boolean): void {
    this.connection = null;
    this.published.clear();
    for (const publisher of this.publishers.values()) publisher.unbind();
    if (!retry) {
      this.stop("failed", reason);
      return;
    }
    if (!this.reconnecting) void this.reconnect(reason);
  }

  /** Joins again until it works, the attempts run out, or the person leaves; one loop at a time. */
  private async reconnect(reason: string): Promise<void> {
    this.reconnecting = true;
    this.state = "reconnecting";
    debugCounters().state = "reconnecting";
    this.problem = reason;
    try {
      for (let attempt = 0; attempt < MAX_RECONNECT_ATTEMPTS; attempt++) {
        this.reconnectAttempt = attempt + 1;
        this.emit();
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt)));
        if (!this.isReconnecting()) return;
        try {
          await this.connect(await joinMeeting(this.meetingId, this.displayName));
          debugCounters().reconnects++;
          return;
        } catch (error) {
          if (!this.isReconnecting()) return;
          this.problem = `${reason}; attempt ${attempt + 1} failed: ${describe(error)}`;
          console.warn(`reconnect attempt ${attempt + 1} failed: ${describe(error)}`);
        }
      }
      this.stop("failed", `could not reconnect: ${this.problem}`);
    } finally {
      this.reconnecting = false;
    }
  }

  /** Read through a method: the state changes under the loop's awaits. */
  private isReconnecting(): boolean {
    return this.state === "reconnecting";
  }

  private stop(state: "left" | "failed", problem: string | null): void {
    this.state = state;
    this.problem = problem;
    this.epoch++;
    debugCounters().state = state;
    setHooks(null);
    for (const timer of this.timers) clearInterval(timer);
    const tracks = [this.media.camera, this.media.microphone];
    for (const publisher of this.publishers.values()) {
      publisher.stop();
      tracks.push(publisher.mediaTrack);
    }
    this.publishers.clear();
    for (const track of tracks) track?.stop();
    for (const receiver of [...this.videoReceivers.values(), ...this.audioReceivers.values()])
      receiver.close();
    this.videoReceivers.clear();
    this.audioReceivers.clear();
    this.playout.close();
    if (state === "failed") {
      this.connection?.drop(problem ?? "failed");
      recordError("meeting", problem);
    }
    this.connection = null;
    this.emit();
  }

  // --- publishing --------------------------------------------------------------------------------------

  private newMicrophone(track: MediaStreamTrack): AudioPublisher {
    return new AudioPublisher(track, (levelDbov, voice) => {
      if (!this.muted) this.speakers.level(SELF, levelDbov, voice, performance.now());
    });
  }

  private async publish(role: Role): Promise<void> {
    const connection = this.connection;
    const publisher = this.publishers.get(role);
    if (connection === null || publisher === undefined || this.published.has(role)) return;
    const kind = role === "microphone" ? TrackKind.AUDIO : TrackKind.VIDEO;
    const codec = role === "microphone" ? AUDIO_CODEC : this.videoCodec;
    const label = role === "screen" ? SCREEN_LABEL : role;
    try {
      const track = await connection.publish(kind, codec, label);
      if (this.connection !== connection || this.publishers.get(role) !== publisher) return;
      this.published.set(role, track.trackId);
      publisher.bind(connection.sink, track.trackId, connection.maxFramePayload);
    } catch (error) {
      if (!connection.closed) recordError(`publish ${role}`, error);
    }
  }

  private async unpublish(role: Role): Promise<void> {
    const publisher = this.publishers.get(role);
    this.publishers.delete(role);
    publisher?.stop();
    const trackId = this.published.get(role);
    this.published.delete(role);
    const connection = this.connection;
    if (trackId === undefined || connection === null) return;
    try {
      await connection.unpublish(trackId);
    } catch (error) {
      if (!connection.closed) recordError(`unpublish ${role}`, error);
    }
  }

  // --- receiving ---------------------------------------------------------------------------------------

  private onEvent(event: SignalingEvent): void {
    if (event.case === "keyframeRequest") {
      for (const [role, trackId] of this.published) {
        const publisher = this.publishers.get(role);
        if (trackId === event.value.trackId && publisher instanceof VideoPublisher)
          publisher.requestKeyframe();
      }
      return;
    }
    if (event.case === "error") {
      console.warn(`server error: ${event.value.message}`);
      return;
    }
    if (event.case === "participantJoined" && event.value.participant !== undefined) {
      debugCounters().names[event.value.participant.participantId] = event.value.participant.displayName;
    }
    if (event.case === "participantLeft") this.speakers.forget(event.value.participantId);
    const changes = this.roster.apply(event);
    for (const track of changes.removed) this.closeTrack(track);
    for (const track of changes.added) {
      this.openTrack(track);
      this.subscribe(track.trackId);
    }
    this.emit();
  }

  private allTracks(): Track[] {
    return this.roster
      .participants()
      .flatMap((peer) => [peer.audio, peer.camera, peer.screen])
      .filter((track): track is Track => track !== null);
  }

  private subscribe(trackId: number): void {
    const connection = this.connection;
    connection?.subscribe(trackId).catch((error: unknown) => {
      if (!connection.closed && this.roster.track(trackId) !== undefined) {
        recordError(`subscribe to track ${trackId}`, error);
      }
    });
  }

  private openTrack(track: Track): void {
    const { trackId, participantId } = track;
    const meter = new TrackMeter();
    this.meters.set(trackId, meter);
    const counters = debugCounters();
    if (track.kind === TrackKind.VIDEO) {
      const events: ReceiverEvents = {
        decoded: (width, height, captureUs, synthetic) => {
          const now = Date.now();
          meter.decoded(width, height, captureUs / 1000, now);
          countFor(counters.decodedVideoFrames, participantId);
          if (synthetic) countFor(counters.syntheticFrames, participantId);
          else recordLatency(participantId, now - captureUs / 1000);
        },
        stalled: (reason) => {
          counters.decoderStalls++;
          console.warn(`video of ${participantId}: ${reason}; waiting for a keyframe`);
        },
      };
      const receiver = new VideoReceiver(track.codec, participantId, webCodecsVideoDecoder, events, () => {
        counters.keyframeRequests++;
        this.connection?.requestKeyframe(trackId).catch(() => undefined);
      });
      receiver.attach(this.renderers.get(trackId) ?? null);
      this.videoReceivers.set(trackId, receiver);
    } else if (track.kind === TrackKind.AUDIO) {
      const events: ReceiverEvents = {
        decoded: (_width, _height, _captureUs, synthetic) => {
          countFor(counters.decodedAudioFrames, participantId);
          if (synthetic) countFor(counters.syntheticFrames, participantId);
        },
        stalled: (reason) => {
          console.warn(`audio of ${participantId}: ${reason}`);
        },
      };
      const output = {
        play: (data: AudioData) => {
          this.playout.play(participantId, data);
        },
      };
      this.audioReceivers.set(
        trackId,
        new AudioReceiver(track.codec, participantId, webCodecsAudioDecoder, events, output),
      );
    }
  }

  private closeTrack(track: Track): void {
    this.videoReceivers.get(track.trackId)?.close();
    this.videoReceivers.delete(track.trackId);
    this.audioReceivers.get(track.trackId)?.close();
    this.audioReceivers.delete(track.trackId);
    this.meters.delete(track.trackId);
    if (track.kind === TrackKind.AUDIO) this.playout.remove(track.participantId);
  }

  private onAudio(header: FrameHeader, payload: Uint8Array): void {
    const track = this.roster.track(header.trackId);
    if (track === undefined) return;
    this.speakers.level(track.participantId, header.levelDbov, header.voiceActivity, performance.now());
    this.meters.get(header.trackId)?.received(payload.length, Date.now());
    this.audioReceivers.get(header.trackId)?.push(header, payload, performance.now());
  }

  private onVideo(header: FrameHeader, payload: Uint8Array): void {
    this.meters.get(header.trackId)?.received(payload.length, Date.now());
    this.videoReceivers.get(header.trackId)?.push(header, payload);
  }

  // --- the view ----------------------------------------------------------------------------------------

  private view(): MeetingView {
    const now = performance.now();
    const active = this.speakers.active(now);
    return {
      state: this.state,
      self: {
        participantId: this.participantId,
        displayName: this.displayName,
        muted: this.muted,
        camera: this.publishers.get("camera")?.mediaTrack ?? null,
        screen: this.publishers.get("screen")?.mediaTrack ?? null,
        speaking: this.speakers.isSpeaking(SELF, now),
      },
      peers: this.roster.participants().map((peer) => ({
        participantId: peer.participantId,
        displayName: peer.displayName,
        camera: peer.camera?.trackId ?? null,
        screen: peer.screen?.trackId ?? null,
        muted: peer.audio === null,
        speaking: this.speakers.isSpeaking(peer.participantId, now),
      })),
      activeSpeaker: active === SELF ? this.participantId : active,
      problem: this.problem,
      reconnectAttempt: this.reconnectAttempt,
    };
  }

  private emit(): void {
    const view = this.view();
    this.lastSpeakerView = speakerKey(view);
    this.onChange(view);
  }

  private emitIfSpeakersChanged(): void {
    const view = this.view();
    const key = speakerKey(view);
    if (key === this.lastSpeakerView) return;
    this.lastSpeakerView = key;
    this.onChange(view);
  }
}

function speakerKey(view: MeetingView): string {
  const speaking = view.peers.filter((peer) => peer.speaking).map((peer) => peer.participantId);
  return `${view.activeSpeaker ?? ""}|${view.self.speaking}|${speaking.join(",")}`;
}
