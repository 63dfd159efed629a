// Tag a WAV file with a model exported by `main.py export --output=model.onnx`, in Node.js.
//
//   npm install onnxruntime-node        (add --ignore-scripts where its optional CUDA download
//                                         cannot be reached: the CPU library ships in the package)
//   node docs/examples/onnx_node.mjs model.onnx song.wav
//
// The labels, sample rate and clip length are in the ONNX file's metadata_props (JSON values).
// onnxruntime's JavaScript API does not expose them, so readMetadata() below reads them from the
// file's protobuf itself: ModelProto field 14 holds (key = field 1, value = field 2) pairs. No
// other package is needed. The WAV must be 16-bit PCM at the model's sample rate (resample it
// first, e.g. `sox song.mp3 -r 32000 -c 1 -b 16 song.wav`); channels are averaged.
// Like `main.py inference`, the file is cut into windows of the training clip (the last one
// aligned to the end, a short file zero-padded) and the windows' probabilities averaged.
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";

function readVarint(bytes, position) {
  let value = 0, scale = 1, byte;
  do {
    byte = bytes[position++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return [value, position];
}

// Top-level fields of a protobuf message: yields [field number, bytes] of length-delimited ones.
function* fields(bytes) {
  let position = 0;
  while (position < bytes.length) {
    let key, length;
    [key, position] = readVarint(bytes, position);
    const wireType = key % 8;
    if (wireType === 0) [, position] = readVarint(bytes, position);
    else if (wireType === 1) position += 8;
    else if (wireType === 5) position += 4;
    else if (wireType === 2) {
      [length, position] = readVarint(bytes, position);
      yield [Math.floor(key / 8), bytes.subarray(position, position + length)];
      position += length;
    } else throw new Error(`unsupported protobuf wire type ${wireType}`);
  }
}

export function readMetadata(bytes) {
  const text = new TextDecoder();
  const metadata = {};
  for (const [number, entry] of fields(bytes)) {
    if (number !== 14) continue;  // ModelProto.metadata_props
    const pair = {};
    for (const [part, value] of fields(entry)) pair[part] = text.decode(value);
    metadata[pair[1]] = JSON.parse(pair[2]);
  }
  return metadata;
}

function readWav(bytes, sampleRate) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let channels = 0, rate = 0, bits = 0;
  for (let position = 12; position + 8 <= bytes.length;) {
    const id = String.fromCharCode(...bytes.subarray(position, position + 4));
    const size = view.getUint32(position + 4, true);
    const body = position + 8;
    if (id === "fmt ") {
      channels = view.getUint16(body + 2, true);
      rate = view.getUint32(body + 4, true);
      bits = view.getUint16(body + 14, true);
    } else if (id === "data") {
      if (bits !== 16 || rate !== sampleRate) {
        throw new Error(`needs 16-bit PCM at ${sampleRate} Hz; got ${bits}-bit at ${rate} Hz`);
      }
      const frames = Math.floor(size / (2 * channels));
      const samples = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) sum += view.getInt16(body + 2 * (i * channels + c), true);
        samples[i] = sum / channels / 32768;
      }
      return samples;
    }
    position = body + size + (size % 2);
  }
  throw new Error("no data chunk: not a WAV file");
}

function windows(samples, length) {
  if (samples.length <= length) {
    const padded = new Float32Array(length);
    padded.set(samples);
    return [padded];
  }
  const starts = [];
  for (let start = 0; start + length <= samples.length; start += length) starts.push(start);
  if (starts.at(-1) + length < samples.length) starts.push(samples.length - length);
  return starts.map((start) => samples.subarray(start, start + length));
}

const [modelPath, wavPath] = process.argv.slice(2);
const modelBytes = readFileSync(modelPath);
const metadata = readMetadata(modelBytes);
const samples = readWav(readFileSync(wavPath), metadata.sample_rate);
const session = await ort.InferenceSession.create(modelBytes);
const batch = windows(samples, metadata.clip_samples);
const input = new Float32Array(batch.length * metadata.clip_samples);
batch.forEach((window, index) => input.set(window, index * metadata.clip_samples));
const { probabilities } = await session.run({
  waveform: new ort.Tensor("float32", input, [batch.length, metadata.clip_samples]),
});
const classes = metadata.labels.length;
const mean = metadata.labels.map((label, k) => {
  let sum = 0;
  for (let w = 0; w < batch.length; w++) sum += probabilities.data[w * classes + k];
  return [label, sum / batch.length];
});
mean.sort((a, b) => b[1] - a[1]);
console.log(JSON.stringify({ file: wavPath, model_type: metadata.model_type,
                             windows: batch.length, top: mean.slice(0, 3) }));
