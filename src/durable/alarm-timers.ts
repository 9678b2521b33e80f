/**
 * Timers: a Durable Object has one alarm, and each part of the device object has times
 * it must be woken at (a lease's expiry, a retry, a deadline, presence, a listing retry,
 * the index feed, retention, chain forwards). Parts register a function answering their
 * next due time; the alarm is set for the earliest, and a part that learns of an earlier
 * time moves it forward with `wakeBy`.
 */
import { nextAlarm } from "../core/timing.js";
import { usage } from "../platform/usage.js";

/** A part's next due times (null: nothing due). */
export type DueTimes = (now: number) => number | null | readonly (number | null)[];

export class AlarmTimers {
  private readonly sources: DueTimes[] = [];
  /** the alarm as last set (null: none) */
  private alarmAt: number | null = null;

  constructor(private readonly storage: DurableObjectStorage) {}

  /** Adds a part's due times to those the alarm is set by. */
  register(dueTimes: DueTimes) {
    this.sources.push(dueTimes);
  }

  /** Reads the alarm already set (after a restart). */
  async load() {
    this.alarmAt = await this.storage.getAlarm();
  }

  /** The alarm fired: it is no longer set until `reschedule`. */
  fired() {
    usage.alarmsRun++;
    this.alarmAt = null;
  }

  /** Moves the alarm earlier if `at` comes before it; a too-early alarm just reschedules. */
  wakeBy(at: number) {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    usage.alarmsSet++;
    void this.storage.setAlarm(at);
  }

  /** Sets the alarm for the earliest time any part is due (or none). */
  async reschedule(now: number) {
    const at = nextAlarm(this.sources.flatMap((due) => due(now)));
    if (at === null) {
      await this.storage.deleteAlarm();
    } else {
      usage.alarmsSet++;
      await this.storage.setAlarm(at);
    }
    this.alarmAt = at;
  }
}
