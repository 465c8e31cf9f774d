// Package pooler is pgha's embedded PgBouncer-style connection pooler: it
// speaks the Postgres wire protocol to clients, authenticates them
// (scram-sha-256, md5, plain, trust; users from a userlist.txt auth_file or
// an auth_query), and hands them server connections from pools per
// (database, user) in session, transaction or statement mode.
//
// Shape: a goroutine per client reads the client's messages header-first and
// forwards bodies without building message structs; while a server
// connection is attached, a pump goroutine forwards the server's answers and
// releases the connection after ReadyForQuery 'I' in transaction mode. Only
// what routing needs is parsed: startup, auth, ReadyForQuery, ParameterStatus,
// BackendKeyData and the names in Parse/Bind/Describe/Close (protocol-level
// prepared statements are re-prepared on other server connections under
// pooler-owned names). An idle client holds no buffer.
//
// Where to send transactions comes from a Router the daemon supplies (the
// cluster view); the pooler never imports leader/, replication/ or etcd.
// On a primary change it pauses new transactions, lets running ones end,
// drops connections to the old primary and resumes against the new one.
//
// The admin console (database "pgbouncer", alias "pgha") answers PgBouncer's
// SHOW commands with PgBouncer 1.25's columns and real figures, and takes
// its commands (PAUSE/RESUME/KILL [db], KILL_CLIENT, DISABLE/ENABLE, ...).
// Settings per database and per user are PgBouncer's [databases] and
// [users] (dbconf.go); startup parameters are carried or refused as
// PgBouncer does (params.go); every session the pooler ends gets a FATAL
// ErrorResponse with a SQLSTATE before its socket closes (farewell.go).
//
// The pooler runs inside the daemon that may hold the primary's lease, so
// nothing a client sends may take the daemon down or grow it without
// bound: logins are bounded in time (client_login_timeout) and number
// (max_pending_logins), every length is checked before memory is taken,
// kept statements are bounded, an unknown user cannot be told from a
// known one, and a panic in one connection's goroutines closes that
// connection only (pgha_pooler_panics_total).
package pooler
