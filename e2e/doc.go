// Package e2e holds multi-node tests: several pgha daemons (in-process,
// each with its own config) over real Postgres and real etcd, with kill -9
// of nodes and etcd cut through a TCP proxy. It has no non-test code.
package e2e
