package pooler

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pgha/pgha/config"
)

// Per-database and per-user settings, PgBouncer's [databases] and
// [users]: which database on Postgres a name stands for, pool size, pool
// mode, reserve, limits. A pool's settings are resolved once, when the
// pool is made, with PgBouncer's precedence: the user's setting, then the
// database's, then the global one (pool_mode, pool_size,
// reserve_pool_size); min_pool_size, max_db_connections, server_lifetime
// and the forced user come from the database only, max_user_connections
// and the idle timeouts from the user only. With a forced user the
// pool's user is the forced one, and so are its [users] settings.

// poolConf is what a pool needs to know about its database and user.
type poolConf struct {
	dbname       string // on Postgres
	mode         poolMode
	size         int
	reserve      int
	min          int
	maxDB        int
	maxUser      int
	lifetime     time.Duration
	connectQuery string
	// startup are extra startup parameters of the server login
	// (client_encoding, DateStyle, TimeZone of the database entry).
	startup []string
	// Idle timeouts of the pool's clients.
	clientIdle, idleTx time.Duration
}

// dbState is the console's state of one database name: PAUSE db, KILL
// db (paused too), DISABLE db.
type dbState struct {
	paused, disabled atomic.Bool
}

// dbEntry returns the [databases] entry for a client's database name:
// the exact one, else "*"; ok is false when the name is not served (some
// entries are configured, none matches and there is no "*").
func (p *Pooler) dbEntry(name string) (config.PoolerDatabase, bool) {
	if d, ok := p.cfg.Databases[name]; ok {
		return d, true
	}
	if d, ok := p.cfg.Databases["*"]; ok {
		return d, true
	}
	return config.PoolerDatabase{}, len(p.cfg.Databases) == 0
}

// errNoDatabase is PgBouncer's answer for a database it does not serve.
func errNoDatabase(name string) error {
	return &loginError{code: codeProtocolViolation, msg: "no such database: " + name}
}

// errDatabaseDisabled is PgBouncer's answer after DISABLE db.
func errDatabaseDisabled(name string) error {
	return &loginError{code: codeProtocolViolation, msg: fmt.Sprintf("database %q is disabled", name)}
}

// poolUser is the user a client of db logs in to Postgres as: the
// database's forced user, or the client's own.
func (p *Pooler) poolUser(d config.PoolerDatabase, user string) string {
	if d.User != "" {
		return d.User
	}
	return user
}

// forcedCred is the credential of a database's forced user: its
// password in the entry, else its auth_file line.
func (p *Pooler) forcedCred(d config.PoolerDatabase) secret {
	if d.Password != "" {
		return parseSecret(d.Password)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.users[d.User]
}

// resolve works out a pool's settings for the client-facing database
// name and the pool's user.
func (p *Pooler) resolve(name, user string) poolConf {
	d, _ := p.dbEntry(name)
	u := p.cfg.Users[user]
	c := poolConf{
		dbname:       name,
		mode:         parseMode(p.cfg.PoolMode),
		size:         p.cfg.DefaultPoolSize,
		reserve:      p.cfg.ReservePoolSize,
		min:          p.cfg.MinPoolSize,
		maxDB:        p.cfg.MaxDBConnections,
		maxUser:      p.cfg.MaxUserConnections,
		lifetime:     p.cfg.ServerLifetime.D(),
		connectQuery: d.ConnectQuery,
		clientIdle:   p.cfg.ClientIdleTimeout.D(),
		idleTx:       p.cfg.IdleTransactionTimeout.D(),
	}
	if d.DBName != "" {
		c.dbname = d.DBName
	}
	switch {
	case u.PoolMode != "":
		c.mode = parseMode(u.PoolMode)
	case d.PoolMode != "":
		c.mode = parseMode(d.PoolMode)
	}
	switch {
	case u.PoolSize != nil:
		c.size = *u.PoolSize
	case d.PoolSize != nil:
		c.size = *d.PoolSize
	}
	switch {
	case u.ReservePoolSize != nil:
		c.reserve = *u.ReservePoolSize
	case d.Reserve() != nil:
		c.reserve = *d.Reserve()
	}
	if d.MinPoolSize != nil {
		c.min = *d.MinPoolSize
	}
	if c.min > c.size {
		c.min = c.size
	}
	if d.MaxDBConnections > 0 {
		c.maxDB = d.MaxDBConnections
	}
	if u.MaxUserConnections > 0 {
		c.maxUser = u.MaxUserConnections
	}
	if d.ServerLifetime > 0 {
		c.lifetime = d.ServerLifetime.D()
	}
	if u.ClientIdleTimeout > 0 {
		c.clientIdle = u.ClientIdleTimeout.D()
	}
	if u.IdleTransactionTimeout > 0 {
		c.idleTx = u.IdleTransactionTimeout.D()
	}
	for _, kv := range [][2]string{{"client_encoding", d.ClientEncoding}, {"DateStyle", d.DateStyle}, {"TimeZone", d.TimeZone}} {
		if kv[1] != "" {
			c.startup = append(c.startup, kv[0], kv[1])
		}
	}
	return c
}

// dbState returns the console state of a database name, made on first use.
func (p *Pooler) dbState(name string) *dbState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.dbStates[name]
	if st == nil {
		st = &dbState{}
		p.dbStates[name] = st
	}
	return st
}

// slot takes (delta 1) or returns (-1) a server connection slot of the
// pool's database (max_db_connections) and user (max_user_connections).
func (pl *pool) slot(delta int) bool {
	p := pl.p
	maxDB, maxUser := pl.conf.maxDB, pl.conf.maxUser
	if maxDB <= 0 && maxUser <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if delta > 0 && ((maxDB > 0 && p.dbConns[pl.key.db] >= maxDB) || (maxUser > 0 && p.userConns[pl.key.user] >= maxUser)) {
		return false
	}
	p.dbConns[pl.key.db] += delta
	p.userConns[pl.key.user] += delta
	return true
}

// sharesCap reports whether o's server connections count against the
// max_db_connections or max_user_connections of pl.
func (pl *pool) sharesCap(o *pool) bool {
	return o != pl && ((pl.conf.maxDB > 0 && o.key.db == pl.key.db) || (pl.conf.maxUser > 0 && o.key.user == pl.key.user))
}

// evictFor closes the oldest idle server connection of another pool
// whose connections count against pl's caps; it reports whether it
// closed one.
func (p *Pooler) evictFor(pl *pool) bool {
	for _, o := range p.poolList() {
		if !pl.sharesCap(o) {
			continue
		}
		o.mu.Lock()
		var victim *server
		if len(o.idle) > 0 {
			victim = o.idle[0] // idle is a stack: the bottom waited longest
			o.idle[0] = nil
			o.idle = o.idle[1:]
		}
		o.mu.Unlock()
		if victim != nil {
			victim.close()
			return true
		}
	}
	return false
}

// wakeCapped wakes a waiter of each pool sharing pl's caps: a server
// connection of pl became idle or closed, so they may evict it or take
// its slot.
func (p *Pooler) wakeCapped(pl *pool) {
	for _, o := range p.poolList() {
		if o != pl && o.sharesCap(pl) {
			o.mu.Lock()
			o.wakeOne()
			o.mu.Unlock()
		}
	}
}
