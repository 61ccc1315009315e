// cospeech live viewer: speech (microphone or a file) -> WS /stream -> an animated SMPL-X skeleton.
// The wire format is described in cospeech/serve/protocol.py. Test hook: `/?src=URL` streams that
// audio file as soon as the page loads; window.cospeechFramesReceived counts frames received,
// window.cospeechSamplesSent the audio samples sent, and window.cospeechDone turns true when the
// server's end message arrives.
import * as THREE from './three.module.js';

const $ = (id) => document.getElementById(id);
const CHUNK_S = 0.1; // seconds of audio per message

window.cospeechFramesReceived = 0;
window.cospeechSamplesSent = 0;
window.cospeechDone = false;
window.cospeechError = null;

// -- the scene -----------------------------------------------------------------------------
let renderer = null; // without WebGL the stream, counter and face panel still work
try {
  renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio);
  $('scene').appendChild(renderer.domElement);
} catch (err) {
  $('status').textContent = 'no WebGL in this browser: the skeleton cannot be drawn';
}
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x15181d);
const camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
camera.position.set(0, 0.3, 3.2);
camera.lookAt(0, 0.2, 0);
const grid = new THREE.GridHelper(4, 20, 0x3b4452, 0x262c35);
scene.add(grid);

function resize() {
  renderer?.setSize(window.innerWidth, window.innerHeight);
  camera.aspect = window.innerWidth / window.innerHeight;
  camera.updateProjectionMatrix();
}
window.addEventListener('resize', resize);
resize();

let skeleton = null; // { bones, joints, positions, parents }

function buildSkeleton(header) {
  if (skeleton) { scene.remove(skeleton.bones); scene.remove(skeleton.joints); }
  const parents = header.parents;
  const pairs = [];
  parents.forEach((p, j) => { if (p >= 0) pairs.push([j, p]); });
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute('position', new THREE.BufferAttribute(new Float32Array(pairs.length * 6), 3));
  const bones = new THREE.LineSegments(geometry, new THREE.LineBasicMaterial({ color: 0x93c5fd }));
  const joints = new THREE.InstancedMesh(new THREE.SphereGeometry(0.018, 10, 8),
    new THREE.MeshBasicMaterial({ color: 0xfbbf24 }), parents.length);
  bones.frustumCulled = false;
  joints.frustumCulled = false;
  scene.add(bones);
  scene.add(joints);
  skeleton = { bones, joints, pairs, framed: false };
}

const field = (header, name) => header.frame.fields.find((f) => f.name === name);

function showFrame(header, frame) {
  const pos = field(header, 'positions');
  const p = frame.subarray(pos.offset, pos.offset + pos.count);
  const lines = skeleton.bones.geometry.attributes.position;
  skeleton.pairs.forEach(([j, q], k) => {
    lines.setXYZ(2 * k, p[3 * j], p[3 * j + 1], p[3 * j + 2]);
    lines.setXYZ(2 * k + 1, p[3 * q], p[3 * q + 1], p[3 * q + 2]);
  });
  lines.needsUpdate = true;
  const m = new THREE.Matrix4();
  for (let j = 0; j < pos.count / 3; j++) {
    m.makeTranslation(p[3 * j], p[3 * j + 1], p[3 * j + 2]);
    skeleton.joints.setMatrixAt(j, m);
  }
  skeleton.joints.instanceMatrix.needsUpdate = true;
  if (!skeleton.framed) { // aim the camera at the first frame's body
    const box = new THREE.Box3().setFromBufferAttribute(lines);
    const centre = box.getCenter(new THREE.Vector3());
    camera.position.set(centre.x, centre.y + 0.1, centre.z + 3.6);
    camera.lookAt(centre);
    grid.position.y = box.min.y;
    skeleton.framed = true;
  }
  const jaw = frame[field(header, 'jaw_open').offset];
  $('jaw').textContent = jaw.toFixed(3);
  // speech opens the SMPL-X jaw by a few degrees (BEAT2's mocap peaks near 0.06 rad): 0.08 rad is wide open
  $('mouth').setAttribute('ry', (2 + 16 * Math.min(1, Math.max(0, jaw) / 0.08)).toFixed(1));
  const ex = field(header, 'expression');
  const bars = $('expr').children;
  for (let k = 0; k < ex.count; k++) {
    const v = frame[ex.offset + k];
    bars[k].style.height = `${Math.min(40, 2 + 12 * Math.abs(v))}px`;
    bars[k].style.background = v >= 0 ? '#f59e0b' : '#60a5fa';
  }
}

// -- the stream ----------------------------------------------------------------------------
const stream = { ws: null, header: null, frames: [], shown: -1, clock: 0, next: 0 };

function status(text) { $('status').textContent = text; }

async function serverRate() {
  const health = await (await fetch('/health')).json();
  return health.sample_rate;
}

function openStream(sampleRate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/stream`);
    ws.binaryType = 'arraybuffer';
    Object.assign(stream, { ws, header: null, frames: [], shown: -1, clock: 0, next: 0 });
    window.cospeechFramesReceived = 0;
    window.cospeechSamplesSent = 0;
    window.cospeechDone = false;
    ws.onopen = () => ws.send(JSON.stringify({ sample_rate: sampleRate, format: 'f32le' }));
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        const message = JSON.parse(event.data);
        if (message.type === 'header') {
          stream.header = message;
          buildSkeleton(message);
          const bars = $('expr');
          bars.replaceChildren(...Array.from({ length: field(message, 'expression').count }, () => document.createElement('div')));
          $('fps').textContent = `at ${message.fps} fps`;
          resolve(ws);
        } else if (message.type === 'end') {
          window.cospeechDone = true;
          status(`done: ${message.frames} frames`);
        }
        return;
      }
      const view = new DataView(event.data);
      const first = view.getUint32(0, true);
      const n = view.getUint32(4, true);
      if (first !== stream.next) {
        window.cospeechError = `frame ${first} arrived where ${stream.next} was due`;
        status(window.cospeechError);
      }
      const floats = stream.header.frame.floats;
      const rows = new Float32Array(event.data, 8, n * floats);
      for (let k = 0; k < n; k++) stream.frames.push(rows.subarray(k * floats, (k + 1) * floats));
      stream.next = first + n;
      window.cospeechFramesReceived += n;
      $('counter').textContent = String(window.cospeechFramesReceived);
    };
    ws.onclose = (event) => {
      $('stop').disabled = true;
      if (!stream.header) reject(new Error(`closed ${event.code}: ${event.reason}`));
      if (event.code !== 1000) {
        window.cospeechError = `closed ${event.code}: ${event.reason || 'no reason given'}`;
        status(window.cospeechError);
      }
    };
    ws.onerror = () => status('connection error');
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A whole file: decoded and resampled by the browser, sent at real-time pace, then the end.
async function streamAudio(arrayBuffer, label) {
  const rate = await serverRate();
  const decoded = await new OfflineAudioContext(1, 1, rate).decodeAudioData(arrayBuffer);
  const mono = new Float32Array(decoded.length);
  for (let c = 0; c < decoded.numberOfChannels; c++) {
    const channel = decoded.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / decoded.numberOfChannels;
  }
  const ws = await openStream(rate);
  status(`streaming ${label} (${decoded.duration.toFixed(1)} s)`);
  play(decoded);
  const chunk = Math.round(CHUNK_S * rate);
  const start = performance.now();
  for (let sent = 0; sent < mono.length && ws.readyState === WebSocket.OPEN; sent += chunk) {
    const due = start + (1000 * sent) / rate;
    if (due > performance.now()) await sleep(due - performance.now());
    const samples = mono.slice(sent, sent + chunk);
    ws.send(samples.buffer);
    window.cospeechSamplesSent += samples.length;
  }
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: 'end' }));
    status(`sent ${label}; waiting for the last frames`);
  }
}

function play(buffer) { // best effort: the stream does not depend on it
  try {
    const ctx = new AudioContext();
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.start();
  } catch (err) { /* no audio output here */ }
}

let mic = null;

async function startMic() {
  const rate = await serverRate();
  const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule('/viewer/mic-worklet.js');
  const node = new AudioWorkletNode(ctx, 'cospeech-mic', { processorOptions: { targetRate: rate } });
  const ws = await openStream(rate);
  mic = { media, ctx, ws };
  const live = mic;
  node.port.onmessage = (event) => { // nothing after Stop: the end message is the last
    if (mic === live && ws.readyState === WebSocket.OPEN) {
      ws.send(event.data.buffer);
      window.cospeechSamplesSent += event.data.length;
    }
  };
  ctx.createMediaStreamSource(media).connect(node);
  $('stop').disabled = false;
  status('listening to the microphone');
}

function stopMic() {
  if (!mic) return;
  const { media, ctx, ws } = mic;
  mic = null;
  media.getTracks().forEach((t) => t.stop());
  ctx.close();
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'end' }));
  $('stop').disabled = true;
}

const failed = (err) => { window.cospeechError = String(err.message || err); status(window.cospeechError); };
$('mic').onclick = () => startMic().catch(failed);
$('stop').onclick = stopMic;
$('file').onchange = async (event) => {
  const file = event.target.files[0];
  if (file) streamAudio(await file.arrayBuffer(), file.name).catch(failed);
};
$('example').onclick = async () => streamAudio(await (await fetch('/example.wav')).arrayBuffer(), 'the example').catch(failed);

const src = new URLSearchParams(location.search).get('src');
if (src) {
  fetch(src).then((r) => r.arrayBuffer()).then((buffer) => streamAudio(buffer, src)).catch(failed);
}

// -- playback: frames shown at the motion's fps, never ahead of what has arrived -----------------
let last = performance.now();
function animate(now) {
  const dt = (now - last) / 1000;
  last = now;
  if (stream.header && stream.frames.length) {
    stream.clock = Math.min(stream.clock + dt * stream.header.fps, stream.frames.length - 1);
    const k = Math.floor(stream.clock);
    if (k !== stream.shown) {
      showFrame(stream.header, stream.frames[k]);
      stream.shown = k;
    }
  }
  renderer?.render(scene, camera);
  requestAnimationFrame(animate);
}
requestAnimationFrame(animate);
