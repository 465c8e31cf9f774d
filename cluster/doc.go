// Package cluster holds the one snapshot type that flows outward from
// leader/: the cluster view (leader, members, dynamic config, failover
// request, history) as read from etcd, in Patroni's JSON shapes.
//
// The pooler and the REST API read a View and never talk to etcd on their
// own. cluster holds plain data and pure helpers only: it must never import
// an etcd client, start goroutines or do I/O.
package cluster
