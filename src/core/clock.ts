/**
 * The time a Durable Object decides by. In production it is the system clock;
 * a test pins it and moves it by hand (through `runInDurableObject`) and then
 * runs the alarm (`runDurableObjectAlarm`), so leases, deadlines, retention and
 * schedules are tested without sleeping.
 */
export class Clock {
  private pinned: number | null = null;

  now(): number {
    return this.pinned ?? Date.now();
  }

  /** Stops the clock at `ms` (epoch milliseconds). */
  set(ms: number): void {
    this.pinned = ms;
  }

  /** Moves a pinned (or, first pinning it, the real) time forward. */
  advance(ms: number): void {
    this.pinned = this.now() + ms;
  }

  /** Back to the system clock. */
  release(): void {
    this.pinned = null;
  }
}
