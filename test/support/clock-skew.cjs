// Preloaded into a CLI run (NODE_OPTIONS=--require) to give it a clock off
// by CLOCK_SKEW_MS, as an operator's machine without time sync would have.
const offset = Number(process.env.CLOCK_SKEW_MS ?? 0);
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = SkewedDate;
