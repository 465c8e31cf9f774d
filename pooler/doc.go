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
// SHOW commands with PgBouncer's column names.
package pooler
