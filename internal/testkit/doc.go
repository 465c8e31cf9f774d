// Package testkit is the toolkit every package's tests share: waiting on
// an observable condition with a bound (Eventually), a context that ends
// with the test (Ctx), free loopback ports reserved across the test
// binaries running on the machine at once (FreePort, FreeAddr), and a
// leak check that fails a test which leaves a process it started behind
// (CheckNoLeaks: postgres, etcd, fence keepers, attributed to the test by
// the directories it gave them), and a Buffer a logger and the test can
// share.
//
// It never sleeps as a synchroniser and never starts a server itself;
// internal/pgtest and internal/daemon/daemontest build on it. Import it
// only from _test.go files and test harnesses.
package testkit
