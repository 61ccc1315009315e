// Microphone samples -> mono float32 at the session's rate, posted to the page every ~100 ms.
// Downsampling averages the input samples that fall into each output sample (a box low-pass),
// carrying the fractional position from one block to the next.
class CospeechMic extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.step = sampleRate / options.processorOptions.targetRate; // input samples per output sample
    this.pos = this.step; // input position where the next output sample ends, relative to this block
    this.acc = 0;      // running sum and count of the output sample being built
    this.count = 0;
    this.last = 0;
    this.out = [];
    this.flushEvery = Math.round(options.processorOptions.targetRate / 10);
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < input.length; c++) v += input[c][i];
      this.acc += v / input.length;
      this.count += 1;
      while (i + 1 >= this.pos) { // more than once only when the microphone's rate is below the target
        this.last = this.count ? this.acc / this.count : this.last;
        this.out.push(this.last);
        this.acc = 0;
        this.count = 0;
        this.pos += this.step;
      }
    }
    this.pos -= n;
    if (this.out.length >= this.flushEvery) {
      this.port.postMessage(Float32Array.from(this.out));
      this.out = [];
    }
    return true;
  }
}

registerProcessor('cospeech-mic', CospeechMic);
