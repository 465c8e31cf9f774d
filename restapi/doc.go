// Package restapi serves pgha's Patroni-compatible HTTP API on chi: the role
// health checks HAProxy and load balancers poll (/primary, /replica, ...),
// the node and cluster status documents (/patroni, /cluster, /history,
// /config), the management requests (switchover, failover, restart,
// reload, reinitialize, config PATCH/PUT) and Prometheus /metrics.
//
// The unsafe methods are guarded (guard.go): authentication (basic auth or
// verify_client), JSON bodies, and no requests from other sites' web pages
// or for other hosts (DNS rebinding). ClientTLS is the one rule for how
// REST clients (pghactl, peer probes) reach an https API.
//
// restapi reads the cluster through the Node interface and acts through the
// Actions interface, both declared here; cmd/ wires the daemon into them.
// It must never import an etcd client, leader/, replication/ or pooler/,
// and it never talks to etcd or Postgres on its own.
package restapi
