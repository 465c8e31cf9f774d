// Package daemon wires one pgha node: config -> etcd client (or an
// embedded etcd) -> the local Postgres (replication.Instance) -> the
// leader loop, under one errgroup that more components (REST API, pooler)
// join. It owns no HA decision of its own; it must never talk to Postgres
// or etcd except through the packages it wires.
//
// Wiring a component (cmd/pgha/run.go does this before d.Run):
//
//	d, _ := daemon.New(ctx, cfg, log)
//	d.Add("restapi", api.Run)        // Run(ctx) error, returns when ctx ends
//	d.OnFence(pooler.PauseWrites)    // called first when writes must stop
//	err := d.Run(ctx)
//
// What components read and call:
//   - d.View() (cluster.View, ok) and d.Changed() (closed at the next
//     published change): the one snapshot; d.Targets() / TargetsOf(v) turn
//     it into the pooler's primary and replica addresses.
//   - d.LoopInfo(): is leader (lease confirmed), last etcd contact, last
//     loop, local Postgres as last seen; d.Instance() for a live Status.
//   - d.RequestFailover, d.ClearFailover, d.SetConfig (pause is
//     config.Pause), d.Restart, d.Reinitialize, d.ReloadFile.
package daemon
