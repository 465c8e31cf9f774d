// Package fence keeps a node's Postgres from taking writes once the
// leader lease that allows them may have expired, even when the daemon
// that holds the lease is dead or frozen (kill -9, an OOM kill, a panic,
// SIGSTOP, a stuck goroutine).
//
// The daemon cannot be its own guard: a frozen process does nothing on
// time. So the daemon starts a small keeper process (the same binary,
// asked through the environment; see RunKeeperIfAsked), detached into its
// own session, and tells it over a Unix socket until when this node may
// take writes: the send time of the last acknowledged lease keepalive
// plus ttl minus a margin. The keeper stops Postgres at once (SIGQUIT to
// the postmaster, then SIGKILL to what is left) when that instant passes
// while Postgres may take writes (its postmaster is alive and the data
// directory has no standby.signal). Deadlines travel on CLOCK_BOOTTIME,
// which both processes share and which wall-clock changes do not move.
//
// A daemon restarted while its lease is still valid connects to the same
// keeper and extends the deadline once it has adopted the leader key, so
// a healthy primary is never stopped by an upgrade. A clean stop of the
// daemon stops Postgres first and then dismisses the keeper.
//
// The keeper also holds the Linux watchdog device when configured
// (watchdog.mode automatic or required, as in Patroni): it kicks the
// device only on fresh deadlines, with a timeout of ttl - safety_margin,
// so a kernel-level hang that stops the keeper itself resets the machine
// before the lease can expire.
//
// This package knows one data directory; it never imports leader/,
// pooler/, restapi/ or etcd.
package fence
