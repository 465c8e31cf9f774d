// Package haproxytest runs Debian's HAProxy with the shipped
// scripts/haproxy.cfg, rewritten to a test's ports, for tests that check
// role routing end to end. It is a test helper: it takes testing.TB, kills
// HAProxy's process group in t.Cleanup, and must never be imported by
// production code.
package haproxytest
