// Package callback runs the operator's scripts on Postgres events, as
// Patroni's postgresql.callbacks: on_start, on_stop, on_restart,
// on_reload and on_role_change, each called as `script action role
// scope`.
//
// Scripts run one at a time outside the HA loop (Fire never blocks): a
// new event kills a script still running from the previous one, as
// Patroni does, and a script that outlives the timeout is killed. A
// failure is logged with the end of the script's output; it never stops
// the daemon.
//
// This package knows nothing of etcd, the loop or Postgres: the daemon
// tells it what happened.
package callback
