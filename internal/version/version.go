// Package version holds pgha's version, the one home for what pghactl
// version prints and (once the daemon uses it) what /patroni reports as
// patroni.version.
package version

// Version is pgha's release version.
const Version = "0.1.0"
