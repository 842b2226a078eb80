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
 * Media is always end-to-end encrypted (docs/E2EE.md): the session joins with `e2ee`, its publishers seal
 * every frame through `MediaCrypto`, and frames of participants that announced encryption are opened before
 * they reach a decoder (refused ones are counted and dropped). The identity key lives as long as the session,
 * across reconnects, and `TileContinuity` uses it to keep a reconnecting participant's tile in place.
 *
 * Mute and camera-off unpublish the track, so everyone else sees the state change (TrackUnpublished) and no
 * bandwidth is spent; unmuting publishes again. Screen sharing is a second video track labelled "screen".
 * The UI sees a `MeetingView` through `onChange` and attaches renderers to tracks by id.
 */
import { joinMeeting, pollLobby, type JoinGrant } from "./api";
import { backoffDelay } from "./backoff";
import { Connection } from "./connection";
import { TileContinuity } from "./continuity";
import { debugCounters, describe, recordError, setHooks, type SessionState } from "./debug";
import { KeyManager } from "./e2ee";
import type { FrameHeader } from "./frame";
import { endingMessage, endingOfFailure, isHostRole, withRateLimitRetry } from "./hostcontrol";
import { MediaCrypto, SEAL_OVERHEAD } from "./mediacrypto";
import { peerViews, type PeerView } from "./peers";
import type { TrackFigures } from "./meter";
import { AudioPlayout } from "./playout";
import { captureCamera, captureMicrophone } from "./devices";
import { AUDIO_CODEC, AudioPublisher, VideoPublisher } from "./publisher";
import type { VideoRenderer } from "./receiver";
import { TrackReceivers } from "./receiving";
import { Roster, SCREEN_LABEL } from "./roster";
import type { SignalingEvent } from "./signaling";
import { SpeakerDetector } from "./speaker";
import { pickVideoCodec, type VideoCodecName } from "./webcodecs";
import { ParticipantLeft_Reason, TrackKind, type HostAction_Kind, type Track } from "../gen/signaling_pb";

export type Role = "camera" | "microphone" | "screen";
export type { PeerView } from "./peers";

export interface SelfView {
  participantId: string;
  displayName: string;
  muted: boolean;
  camera: MediaStreamTrack | null;
  screen: MediaStreamTrack | null;
  speaking: boolean;
  /** Joined as a host: may mute, remove, lock and end (`hostAction`). */
  host: boolean;
  /** The display name of the host who muted this participant, until it unmutes. */
  mutedBy: string | null;
}

export interface MeetingView {
  state: SessionState;
  self: SelfView;
  peers: PeerView[];
  activeSpeaker: string | null;
  /** While reconnecting or after failing: what happened, for the banner. */
  problem: string | null;
  reconnectAttempt: number;
  /** The session ended for good (removed, meeting ended, locked out); `problem` says why, in words. */
  ended: boolean;
  /** Waiting in the meeting's lobby for a host to let this participant in. */
  lobby: boolean;
}

export interface LocalMedia {
  camera: MediaStreamTrack | null;
  microphone: MediaStreamTrack | null;
}

const MAX_RECONNECT_ATTEMPTS = 12;
const AUDIO_TICK_MS = 10;
const LIVE_TICK_MS = 200;
const SELF = "self";
const LOBBY_POLL_MS = 2_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type Publisher = VideoPublisher | AudioPublisher;

export class MeetingSession {
  private readonly roster = new Roster();
  private readonly speakers = new SpeakerDetector();
  private readonly publishers = new Map<Role, Publisher>();
  /** The server's track id of each published role on the current connection. */
  private readonly published = new Map<Role, number>();
  private readonly continuity = new TileContinuity();
  private readonly receivers: TrackReceivers;
  private readonly crypto: MediaCrypto;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private connection: Connection | null = null;
  private epoch = 0;
  private state: SessionState = "connecting";
  private participantId = "";
  private problem: string | null = null;
  private reconnectAttempt = 0;
  private reconnecting = false;
  private muted: boolean;
  private mutedBy: string | null = null;
  private host = false;
  private ended = false;
  private lobby = false;
  private lastLiveState = "";

  private constructor(
    private readonly meetingId: string,
    private readonly displayName: string,
    private readonly media: LocalMedia,
    private readonly videoCodec: string,
    private readonly playout: AudioPlayout,
    keys: KeyManager,
    private readonly onChange: (view: MeetingView) => void,
  ) {
    this.muted = media.microphone === null;
    this.receivers = new TrackReceivers(playout, (trackId) => {
      this.connection?.requestKeyframe(trackId).catch(() => undefined);
    });
    this.crypto = new MediaCrypto(keys, {
      send: (to, payload) =>
        withRateLimitRetry(() => this.connection?.keyMessage(to, payload) ?? Promise.resolve(), sleep),
      requestKeyframe: (participantId) => {
        this.requestVideoKeyframes(participantId);
      },
      changed: () => {
        this.keysChanged();
      },
    });
    this.timers.push(
      setInterval(() => {
        this.receivers.tick(performance.now());
      }, AUDIO_TICK_MS),
      setInterval(() => {
        this.emitIfLiveStateChanged();
      }, LIVE_TICK_MS),
    );
  }

  /**
   * Joins `meetingId` as `displayName`, publishing `media`; resolves once joined the first time. Aborting
   * `signal` gives up waiting in a lobby (the person left before a host let them in).
   */
  static async start(
    meetingId: string,
    displayName: string,
    media: LocalMedia,
    codec: VideoCodecName,
    onChange: (view: MeetingView) => void,
    signal?: AbortSignal,
  ): Promise<MeetingSession> {
    const counters = debugCounters();
    counters.state = "connecting";
    const settings = media.camera?.getSettings();
    const videoCodec = await pickVideoCodec(codec, settings?.width ?? 1280, settings?.height ?? 720);
    counters.videoCodec = videoCodec;
    const playout = await AudioPlayout.create();
    const keys = await KeyManager.create();
    const session = new MeetingSession(meetingId, displayName, media, videoCodec, playout, keys, onChange);
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
      tamperNextFrame: () => {
        const camera = session.publishers.get("camera");
        if (camera instanceof VideoPublisher) camera.tamperNextFrame();
      },
    });
    try {
      await session.connect(await session.admitted(signal));
    } catch (error) {
      const ending = endingOfFailure(error);
      session.ended = ending !== null;
      session.stop("failed", ending ?? describe(error));
      throw ending === null ? error : new Error(ending);
    }
    return session;
  }

  /** Shows track `trackId`'s video through `renderer` (null: nowhere). */
  attachVideo(trackId: number, renderer: VideoRenderer<VideoFrame> | null): void {
    this.receivers.attachVideo(trackId, renderer);
  }

  /** Live figures of a received track, for the stats overlay. */
  figures(trackId: number): TrackFigures | null {
    return this.receivers.figures(trackId);
  }

  /** Starts the audio output if the autoplay policy held it; call from a user gesture. */
  resumeAudio(): void {
    this.playout.resume();
  }

  /** Mutes (unpublishes the microphone) or unmutes (publishes it again, from `deviceId` if it was released). */
  async setMuted(muted: boolean, deviceId = ""): Promise<void> {
    if (muted === this.muted) return;
    this.muted = muted;
    this.mutedBy = null;
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

  /** Acts on the meeting as its host; a refusal (PERMISSION_DENIED, UNKNOWN_PARTICIPANT) rejects. */
  async hostAction(kind: HostAction_Kind, participantId = ""): Promise<void> {
    const connection = this.connection;
    if (connection === null) throw new Error("not connected");
    await connection.hostAction(kind, participantId);
  }

  async leave(): Promise<void> {
    if (this.state === "left") return;
    const connection = this.connection;
    this.stop("left", null);
    await connection?.leave();
  }

  // --- connections -------------------------------------------------------------------------------------

  /** A grant from the control plane; in a lobby meeting, after waiting until a host lets this one in. */
  private async admitted(signal?: AbortSignal): Promise<JoinGrant> {
    let outcome = await joinMeeting(this.meetingId, this.displayName);
    while ("waiting" in outcome) {
      if (!this.lobby) {
        this.lobby = true;
        this.emit();
      }
      await sleep(LOBBY_POLL_MS);
      if (signal?.aborted === true || this.state === "left" || this.state === "failed")
        throw new Error("left the lobby");
      outcome = await pollLobby(this.meetingId, outcome.waiting);
    }
    this.lobby = false;
    return outcome.granted;
  }

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
      audio: (header, payload, headerBytes) => {
        if (current()) this.onAudio(header, payload, headerBytes);
      },
      video: (header, payload, headerBytes) => {
        if (current()) this.onVideo(header, payload, headerBytes);
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
      joined = await connection.join(grant.token, true);
    } catch (error) {
      this.epoch++;
      this.connection = null;
      connection.drop("join failed");
      throw error;
    }
    this.participantId = joined.participantId;
    this.host = isHostRole(grant.role);
    const counters = debugCounters();
    counters.participantId = joined.participantId;
    counters.names[joined.participantId] = this.displayName;
    for (const peer of joined.roster) counters.names[peer.participantId] = peer.displayName;
    const changes = this.roster.joined(joined);
    for (const track of changes.removed) this.closeTrack(track);
    for (const track of changes.added) this.receivers.open(track);
    this.continuity.reset();
    await this.crypto.joined(
      joined.participantId,
      joined.roster.map((peer) => peer.participantId),
    );
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
      this.ended = true;
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
          await this.connect(await this.admitted());
          debugCounters().reconnects++;
          return;
        } catch (error) {
          if (!this.isReconnecting()) return;
          const ending = endingOfFailure(error);
          if (ending !== null) {
            this.ended = true;
            this.stop("failed", ending);
            return;
          }
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
    this.receivers.closeAll();
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
      const maxPayload = connection.maxFramePayload - SEAL_OVERHEAD;
      publisher.bind(connection.sink, track.trackId, maxPayload, this.crypto.seal);
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
      if (event.value.fatal && endingMessage(event.value.code) !== null) this.ended = true;
      return;
    }
    if (event.case === "muted") {
      this.mutedByHost(event.value.byParticipantId);
      return;
    }
    if (event.case === "keyMessageReceived") {
      this.crypto.event(event);
      return;
    }
    if (event.case === "participantJoined" && event.value.participant !== undefined) {
      const { participantId, displayName } = event.value.participant;
      debugCounters().names[participantId] = displayName;
      this.continuity.joined(participantId, performance.now());
    }
    if (event.case === "participantLeft") this.participantLeft(event.value.participantId, event.value.reason);
    this.crypto.event(event);
    const changes = this.roster.apply(event);
    for (const track of changes.removed) this.closeTrack(track);
    for (const track of changes.added) {
      this.receivers.open(track);
      this.subscribe(track.trackId);
    }
    this.emit();
  }

  /** The server already unpublished the microphone: stop sending it, keep the device for unmuting. */
  private mutedByHost(byParticipantId: string): void {
    const publisher = this.publishers.get("microphone");
    this.publishers.delete("microphone");
    this.published.delete("microphone");
    publisher?.stop();
    this.muted = true;
    this.mutedBy = this.roster.displayName(byParticipantId) ?? "a host";
    this.emit();
  }

  /** Before the roster and the keys forget them: a dropped participant may leave a ghost tile. */
  private participantLeft(participantId: string, reason: ParticipantLeft_Reason): void {
    this.speakers.forget(participantId);
    const peer = this.roster.participants().find((known) => known.participantId === participantId);
    if (peer === undefined) return;
    this.continuity.left(
      participantId,
      reason === ParticipantLeft_Reason.DISCONNECTED,
      this.crypto.keys.provenIdentity(participantId),
      peer.displayName,
      peer.camera?.trackId ?? null,
      performance.now(),
    );
  }

  /** A key arrived or an identity was proven: tiles may change hands, locks and safety numbers appear. */
  private keysChanged(): void {
    const now = performance.now();
    for (const peer of this.roster.participants()) {
      const identity = this.crypto.keys.provenIdentity(peer.participantId);
      if (identity !== null) this.continuity.proven(peer.participantId, identity, now);
    }
    this.emit();
  }

  private requestVideoKeyframes(participantId: string): void {
    const peer = this.roster.participants().find((known) => known.participantId === participantId);
    for (const track of [peer?.camera, peer?.screen]) {
      if (track == null) continue;
      debugCounters().keyframeRequests++;
      this.connection?.requestKeyframe(track.trackId).catch(() => undefined);
    }
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

  private closeTrack(track: Track): void {
    this.receivers.close(track);
    this.crypto.forgetTrack(track.trackId);
  }

  private onAudio(header: FrameHeader, payload: Uint8Array, headerBytes: Uint8Array): void {
    const track = this.roster.track(header.trackId);
    if (track === undefined) return;
    this.speakers.level(track.participantId, header.levelDbov, header.voiceActivity, performance.now());
    this.receivers.arrived(header.trackId, payload.length);
    if (!this.roster.encrypts(track.participantId)) {
      this.receivers.audio(header, payload, performance.now());
      return;
    }
    const epoch = this.epoch;
    void this.crypto.open(track.trackId, track.participantId, false, headerBytes, payload).then((opened) => {
      if (opened !== null && epoch === this.epoch) this.receivers.audio(header, opened, performance.now());
    });
  }

  private onVideo(header: FrameHeader, payload: Uint8Array, headerBytes: Uint8Array): void {
    const track = this.roster.track(header.trackId);
    if (track === undefined) return;
    this.receivers.arrived(header.trackId, payload.length);
    if (!this.roster.encrypts(track.participantId)) {
      this.receivers.video(header, payload);
      return;
    }
    const epoch = this.epoch;
    void this.crypto.open(track.trackId, track.participantId, true, headerBytes, payload).then((opened) => {
      if (epoch !== this.epoch) return;
      if (opened === null) this.receivers.lost(header.trackId);
      else this.receivers.video(header, opened);
    });
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
        host: this.host,
        mutedBy: this.mutedBy,
      },
      peers: peerViews(this.roster, this.crypto.keys, this.continuity, this.speakers, now),
      activeSpeaker: active === SELF ? this.participantId : active,
      problem: this.problem,
      reconnectAttempt: this.reconnectAttempt,
      ended: this.ended,
      lobby: this.lobby,
    };
  }

  private emit(): void {
    const view = this.view();
    this.lastLiveState = liveStateKey(view);
    this.onChange(view);
  }

  private emitIfLiveStateChanged(): void {
    const view = this.view();
    const key = liveStateKey(view);
    if (key === this.lastLiveState) return;
    this.lastLiveState = key;
    this.onChange(view);
  }
}

/** What changes with time alone (speakers, ghost tiles expiring, held-back tiles showing), to re-render. */
function liveStateKey(view: MeetingView): string {
  const speaking = view.peers.filter((peer) => peer.speaking).map((peer) => peer.participantId);
  const tiles = view.peers.map((peer) => `${peer.tileKey}:${peer.participantId}`);
  return `${view.activeSpeaker ?? ""}|${view.self.speaking}|${speaking.join(",")}|${tiles.join(",")}`;
}
