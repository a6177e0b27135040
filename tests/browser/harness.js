// One sora-js-sdk client in a Chromium page, driven by tests/browser.py through
// page.evaluate(). Video carries sora_ffi.testpattern's code (64 black/white 32x32
// blocks: 16-bit frame index, 32-bit send time in ms, 16-bit CRC): a sending page draws it on a
// canvas, a receiving page measures the blocks of every decoded frame and Python decodes
// them (testpattern.decode_cells), so both directions check the same frames.
import Sora from "/sora.js";

const BLOCK = 32, ROW = 16, BITS = 64, ROWS = BITS / ROW;

// CRC-16/CCITT-FALSE of the 48-bit payload as 6 little-endian bytes (testpattern._crc).
function crc16(payload) {
  let crc = 0xffff;
  for (let i = 0n; i < 6n; i++) {
    crc ^= Number((payload >> (8n * i)) & 0xffn) << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function drawFrame(ctx, index, width, height) {
  // a moving scene under the code, so that the encoder has real work to do
  ctx.fillStyle = `hsl(${(index * 7) % 360}, 60%, 50%)`;
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = "#28c8f0";
  ctx.fillRect((index * 8) % (width - 160), height / 2, 160, 120);
  const payload = BigInt(index & 0xffff) | (BigInt(Date.now() % 2 ** 32) << 16n);
  const value = payload | (BigInt(crc16(payload)) << 48n);
  for (let i = 0; i < BITS; i++) {
    ctx.fillStyle = (value >> BigInt(i)) & 1n ? "#ffffff" : "#000000";
    ctx.fillRect((i % ROW) * BLOCK, Math.floor(i / ROW) * BLOCK, BLOCK, BLOCK);
  }
}

// The inner half of each block, green channel, averaged (as testpattern.code_cells does).
function measureCells(ctx) {
  const img = ctx.getImageData(0, 0, ROW * BLOCK, ROWS * BLOCK);
  const q = BLOCK / 4, cells = [];
  for (let i = 0; i < BITS; i++) {
    const x0 = (i % ROW) * BLOCK, y0 = Math.floor(i / ROW) * BLOCK;
    let sum = 0;
    for (let y = y0 + q; y < y0 + BLOCK - q; y++)
      for (let x = x0 + q; x < x0 + BLOCK - q; x++) sum += img.data[(y * img.width + x) * 4 + 1];
    cells.push(Math.round(sum / ((BLOCK - 2 * q) ** 2)));
  }
  return cells;
}

class Peer {
  constructor() {
    this.client = null;
    this.frames = [];        // [width, height, cells] per decoded video frame
    this.disconnects = [];   // close events seen by the SDK
    this.notifies = [];
    this.sent = 0;
    this.timers = [];
  }

  // A 440 Hz tone and a canvas with the test pattern at `fps`.
  sourceStream(width, height, fps) {
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    drawFrame(ctx, 0, width, height);
    const stream = canvas.captureStream(fps);
    this.timers.push(setInterval(() => drawFrame(ctx, ++this.sent, width, height), 1000 / fps));
    const audio = new AudioContext({ sampleRate: 48000 });
    const osc = audio.createOscillator();
    osc.frequency.value = 440;
    const gain = audio.createGain();
    gain.gain.value = 0.25;
    const dest = audio.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    return new MediaStream([...stream.getVideoTracks(), ...dest.stream.getAudioTracks()]);
  }

  watchVideo(track) {
    const video = document.createElement("video");
    video.muted = true;
    video.autoplay = true;
    video.srcObject = new MediaStream([track]);
    document.body.appendChild(video);
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const onFrame = () => {
      const w = video.videoWidth, h = video.videoHeight;
      if (w >= ROW * BLOCK && h >= ROWS * BLOCK) {
        canvas.width = w;
        canvas.height = h;
        ctx.drawImage(video, 0, 0);
        this.frames.push([w, h, measureCells(ctx)]);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    video.play().catch(() => {});
  }

  // Chromium measures received audio (audioLevel, totalAudioEnergy) only while it plays.
  playAudio(track) {
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.srcObject = new MediaStream([track]);
    document.body.appendChild(audio);
    audio.play().catch(() => {});
  }

  // `options.metadata`, when given, is the connection's metadata (e.g. an access token);
  // the other options are sora-js-sdk's.
  async connect(url, channelId, role, { metadata = null, ...options } = {}) {
    const sora = Sora.connection([url], false);
    const client = role === "sendonly" ? sora.sendonly(channelId, metadata, options)
                 : role === "recvonly" ? sora.recvonly(channelId, metadata, options)
                 : sora.sendrecv(channelId, metadata, options);
    this.client = client;
    client.on("track", (event) => {
      if (event.track.kind === "video") this.watchVideo(event.track);
      else this.playAudio(event.track);
    });
    client.on("notify", (message) => this.notifies.push(message));
    client.on("disconnect", (event) => this.disconnects.push({ type: event.type, code: event.code, reason: event.reason }));
    const stream = role === "recvonly" ? undefined : this.sourceStream(640, 360, 30);
    await client.connect(stream);
    return client.connectionId;
  }

  async stats() {
    const report = await this.client.pc.getStats();
    return [...report.values()];
  }

  takeFrames() {
    const out = this.frames;
    this.frames = [];
    return out;
  }

  async disconnect() {
    this.timers.forEach(clearInterval);
    if (this.client) await this.client.disconnect();
  }
}

window.peer = new Peer();
window.harnessReady = true;
