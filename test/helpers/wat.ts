/** Test modules written in WAT and compiled with wabt: each one exercises one behaviour of the agent. */
import wabtInit from "wabt";

const WASI = `"wasi_snapshot_preview1"`;

export const WAT = {
  /** writes to stdout and stderr, returns 42 */
  hello: `(module
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "hello from wasm\\n")
    (data (i32.const 48) "a warning\\n")
    (func (export "greet") (result i32)
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 16))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.store (i32.const 0) (i32.const 48)) (i32.store (i32.const 4) (i32.const 10))
      (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      (i32.const 42))
    (func (export "shout") (param $times i32) (result i32)
      (local $i i32)
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 16))
      (loop $l
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $times))))
      (local.get $i)))`,

  /** path_open relative to the preopened sandbox (fd 3); returns the errno */
  files: `(module
    (import ${WASI} "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "fd_close" (func $fd_close (param i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "out.txt")
    (data (i32.const 200) "../escape.txt")
    (data (i32.const 300) "/etc/passwd")
    (data (i32.const 400) "sandboxed\\n")
    (func $open (param $path i32) (param $len i32) (param $oflags i32) (result i32)
      (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len) (local.get $oflags)
        (i64.const 0x42) (i64.const 0) (i32.const 0) (i32.const 0)))
    (func $write_to (param $path i32) (param $len i32) (result i32)
      (local $err i32)
      (local.set $err (call $open (local.get $path) (local.get $len) (i32.const 9)))
      (if (i32.ne (local.get $err) (i32.const 0)) (then (return (local.get $err))))
      (i32.store (i32.const 8) (i32.const 400)) (i32.store (i32.const 12) (i32.const 10))
      (drop (call $fd_write (i32.load (i32.const 0)) (i32.const 8) (i32.const 1) (i32.const 16)))
      (drop (call $fd_close (i32.load (i32.const 0))))
      (i32.const 0))
    (func (export "write_file") (result i32) (call $write_to (i32.const 100) (i32.const 7)))
    (func (export "escape") (result i32) (call $write_to (i32.const 200) (i32.const 13)))
    (func (export "read_absolute") (result i32) (call $open (i32.const 300) (i32.const 11) (i32.const 0))))`,

  /** environ_sizes_get: how many environment variables the guest sees */
  environ: `(module
    (import ${WASI} "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "env_count") (result i32)
      (drop (call $sizes (i32.const 0) (i32.const 4)))
      (i32.load (i32.const 0))))`,

  /** never returns */
  spin: `(module (func (export "spin") (loop $l (br $l))))`,

  /** grows memory until it cannot, then traps */
  bomb: `(module
    (memory (export "memory") 1)
    (func (export "grow")
      (loop $l
        (if (i32.eq (memory.grow (i32.const 256)) (i32.const -1)) (then unreachable))
        (br $l))))`,

  /** proc_exit with the given code */
  exit: `(module
    (import ${WASI} "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "exit_with") (param $code i32) (call $exit (local.get $code))))`,

  /** busy-waits on the monotonic clock for the given milliseconds, returns them */
  sleep: `(module
    (import ${WASI} "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "sleep_ms") (param $ms i64) (result i64)
      (local $start i64)
      (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 0)))
      (local.set $start (i64.load (i32.const 0)))
      (loop $l
        (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 0)))
        (br_if $l (i64.lt_u (i64.sub (i64.load (i32.const 0)) (local.get $start)) (i64.mul (local.get $ms) (i64.const 1000000)))))
      (local.get $ms)))`,

  /** writes "tick N" lines to stdout, busy-waiting `ms` between them */
  ticker: `(module
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "tick 0\\n")
    (func $wait (param $ms i64)
      (local $start i64)
      (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 32)))
      (local.set $start (i64.load (i32.const 32)))
      (loop $l
        (drop (call $clock (i32.const 1) (i64.const 1000) (i32.const 32)))
        (br_if $l (i64.lt_u (i64.sub (i64.load (i32.const 32)) (local.get $start)) (i64.mul (local.get $ms) (i64.const 1000000))))))
    (func (export "tick") (param $n i32) (param $ms i64) (result i32)
      (local $i i32)
      (loop $l
        (i32.store8 (i32.const 69) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 7))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (call $wait (local.get $ms))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
      (local.get $i)))`,

  /** writes `times` chunks of 64 KiB of "x" with no newline: to fd `fd` (flood), or each chunk to stdout and to stderr (both) */
  flood: `(module
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 2)
    (func $fill
      (local $i i32)
      (loop $l
        (i32.store8 (i32.add (i32.const 1024) (local.get $i)) (i32.const 120))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
      (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 65536)))
    (func (export "flood") (param $fd i32) (param $times i32) (result i32)
      (local $i i32)
      (call $fill)
      (loop $l
        (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $times))))
      (local.get $i))
    (func (export "both") (param $times i32) (result i32)
      (local $i i32)
      (call $fill)
      (loop $l
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (local.get $times))))
      (local.get $i)))`,

  /** state that lives as long as its instance: `count` answers 1, 2, 3, ...; `spin` never returns */
  counter: `(module
    (global $n (mut i32) (i32.const 0))
    (func (export "count") (result i32)
      (global.set $n (i32.add (global.get $n) (i32.const 1)))
      (global.get $n))
    (func (export "spin") (loop $l (br $l))))`,

  /** arithmetic over every numeric type; `trap` divides by zero */
  math: `(module
    (func (export "add64") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
    (func (export "add32") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "half") (param f64) (result f64) (f64.div (local.get 0) (f64.const 2)))
    (func (export "pair") (param i32) (result i32 i64) (local.get 0) (i64.const 9007199254740993))
    (func (export "trap") (result i32) (i32.div_s (i32.const 1) (i32.const 0))))`,

  /** needs 300 pages (18.75 MiB) at start: over a 16 MiB agent cap */
  huge: `(module (memory (export "memory") 300) (func (export "run")))`,

  /** imports a host function no agent provides */
  needsHost: `(module (import "camera" "takeImage" (func (param i32))) (func (export "run")))`,

  /**
   * tally(tag, ms): sleeps `ms` (poll_oneoff on the monotonic clock: no CPU), then appends
   * a line "<tag>" to executions.log in its sandbox dir and returns the tag. The fault suite
   * counts a job's executions on a device from that file.
   */
  tally: `(module
    (import ${WASI} "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "fd_close" (func $fd_close (param i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 256) "executions.log")
    ;; subscription at 0 (48 bytes): userdata 0, tag 0 (clock), clock id 1 (monotonic), timeout ns, precision, flags 0 (relative)
    ;; event at 64 (32 bytes), nevents at 96, fd at 100, iovec at 104, digits at 128..140
    (func $sleep (param $ms i64)
      (i64.store (i32.const 0) (i64.const 0))
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 16) (i32.const 1))
      (i64.store (i32.const 24) (i64.mul (local.get $ms) (i64.const 1000000)))
      (i64.store (i32.const 32) (i64.const 0))
      (i32.store16 (i32.const 40) (i32.const 0))
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 96))))
    (func (export "tally") (param $tag i32) (param $ms i64) (result i32)
      (local $p i32) (local $n i32) (local $err i32)
      (call $sleep (local.get $ms))
      ;; "<tag>\\n" written backwards from 140
      (local.set $p (i32.const 140))
      (i32.store8 (local.get $p) (i32.const 10))
      (local.set $n (local.get $tag))
      (loop $d
        (local.set $p (i32.sub (local.get $p) (i32.const 1)))
        (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (br_if $d (i32.ne (local.get $n) (i32.const 0))))
      ;; O_CREAT, rights fd_write, fdflags APPEND
      (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 14) (i32.const 1)
        (i64.const 0x40) (i64.const 0) (i32.const 1) (i32.const 100)))
      (if (i32.ne (local.get $err) (i32.const 0)) (then (return (i32.sub (i32.const 0) (local.get $err)))))
      (i32.store (i32.const 104) (local.get $p))
      (i32.store (i32.const 108) (i32.sub (i32.const 141) (local.get $p)))
      (drop (call $fd_write (i32.load (i32.const 100)) (i32.const 104) (i32.const 1) (i32.const 112)))
      (drop (call $fd_close (i32.load (i32.const 100))))
      (local.get $tag)))`,

  /**
   * A service: a WASI command (_start) that prints "count N" (N = 0, 1, 2, ...) and then
   * sleeps 100 ms (poll_oneoff: no CPU while it waits), forever.
   */
  countService: `(module
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "count ")
    (func $sleep (param $ms i64)
      (i64.store (i32.const 200) (i64.const 0))
      (i32.store8 (i32.const 208) (i32.const 0))
      (i32.store (i32.const 216) (i32.const 1))
      (i64.store (i32.const 224) (i64.mul (local.get $ms) (i64.const 1000000)))
      (i64.store (i32.const 232) (i64.const 0))
      (i32.store16 (i32.const 240) (i32.const 0))
      (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400))))
    (func $print (param $n i32)
      (local $p i32)
      (local.set $p (i32.const 140))
      (i32.store8 (local.get $p) (i32.const 10))
      (loop $d
        (local.set $p (i32.sub (local.get $p) (i32.const 1)))
        (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (br_if $d (i32.ne (local.get $n) (i32.const 0))))
      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 6))
      (i32.store (i32.const 8) (local.get $p)) (i32.store (i32.const 12) (i32.sub (i32.const 141) (local.get $p)))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 20))))
    (func (export "_start")
      (local $i i32)
      (loop $l
        (call $print (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (call $sleep (i64.const 100))
        (br $l))))`,

  /** A service that crashes after a moment: _start prints "up", sleeps 300 ms (poll_oneoff), then exits with code 3. */
  crasher: `(module
    (import ${WASI} "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import ${WASI} "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "up\\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 3))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
      (i64.store (i32.const 200) (i64.const 0))
      (i32.store8 (i32.const 208) (i32.const 0))
      (i32.store (i32.const 216) (i32.const 1))
      (i64.store (i32.const 224) (i64.const 300000000))
      (i64.store (i32.const 232) (i64.const 0))
      (i32.store16 (i32.const 240) (i32.const 0))
      (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))
      (call $exit (i32.const 3))))`,
} as const;

export type WatName = keyof typeof WAT;

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

export async function compileWat(source: string): Promise<Uint8Array<ArrayBuffer>> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat("test.wat", source, { multi_value: true });
  try {
    return new Uint8Array(mod.toBinary({}).buffer) as Uint8Array<ArrayBuffer>;
  } finally {
    mod.destroy();
  }
}

export async function compileAll(): Promise<Record<WatName, Uint8Array<ArrayBuffer>>> {
  const out = {} as Record<WatName, Uint8Array<ArrayBuffer>>;
  for (const [name, src] of Object.entries(WAT)) out[name as WatName] = await compileWat(src);
  return out;
}
