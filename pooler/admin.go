package pooler

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The admin console: database "pgbouncer" (alias "pgha"), simple query
// protocol only, PgBouncer's commands and column names.

type resultSet struct {
	cols []column
	rows [][]*string
}

func (r *resultSet) add(vals ...any) {
	row := make([]*string, len(vals))
	for i, v := range vals {
		var s string
		switch v := v.(type) {
		case nil:
			continue
		case string:
			s = v
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		case bool:
			s = "0"
			if v {
				s = "1"
			}
		default:
			s = fmt.Sprint(v)
		}
		row[i] = &s
	}
	r.rows = append(r.rows, row)
}

// cols reads a column list "name name:i ..." where :i is int4, :q int8,
// :N numeric (PgBouncer's types) and the rest text.
func cols(spec string) []column {
	var out []column
	for _, f := range strings.Fields(spec) {
		name, typ, _ := strings.Cut(f, ":")
		oid := int32(25)
		switch typ {
		case "i":
			oid = 23
		case "q":
			oid = 20
		case "N":
			oid = 1700
		}
		out = append(out, column{name: name, oid: oid})
	}
	return out
}

// serveAdmin runs a console session for c after authentication.
func (p *Pooler) serveAdmin(c *client) error {
	var m msgBuilder
	m.begin('R').i32(0).end()
	m.paramStatus("server_version", "15.0 (pgha pooler)").paramStatus("client_encoding", "UTF8").
		paramStatus("server_encoding", "UTF8").paramStatus("DateStyle", "ISO, MDY").
		paramStatus("standard_conforming_strings", "on").paramStatus("integer_datetimes", "on").
		paramStatus("application_name", "")
	m.begin('K').i32(0).i32(0).end().readyForQuery('I')
	if _, err := c.conn.Write(m.b); err != nil {
		return err
	}
	admin := p.isAdmin(c.user)
	for {
		var h [5]byte
		if _, err := io.ReadFull(c.conn, h[:]); err != nil {
			return err
		}
		n, err := bodyLen(h[:], 1<<20)
		if err != nil {
			return err
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.conn, body); err != nil {
			return err
		}
		switch h[0] {
		case 'X':
			return nil
		case 'Q':
		default:
			var e msgBuilder
			e.errorMsg("ERROR", codeFeatureNotSupp, "the admin console supports only the simple query protocol").readyForQuery('I')
			if _, err := c.conn.Write(e.b); err != nil {
				return err
			}
			continue
		}
		q, _, _ := cstring(body)
		out, stop := p.adminQuery(q, admin)
		if _, err := c.conn.Write(out); err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
}

// adminQuery runs one console command and returns the protocol answer.
// Commands and their errors follow PgBouncer's src/admin.c.
func (p *Pooler) adminQuery(q string, admin bool) ([]byte, bool) {
	var m msgBuilder
	words := strings.Fields(strings.TrimRight(strings.TrimSpace(q), "; \t\n"))
	if len(words) == 0 {
		return m.begin('I').end().readyForQuery('I').b, false
	}
	cmd := strings.ToUpper(words[0])
	arg := ""
	if len(words) > 1 {
		arg = words[1]
	}
	fail := func(code, msg string) ([]byte, bool) {
		return m.errorMsg("ERROR", code, msg).readyForQuery('I').b, false
	}
	if cmd == "SHOW" {
		if arg == "" {
			return fail("42601", "SHOW needs a subject: try SHOW HELP")
		}
		what := strings.ToUpper(arg)
		if what == "HELP" {
			return m.begin('N').byte1('S').str("NOTICE").byte1('C').str("00000").byte1('M').str("Console usage").
				byte1('D').str(consoleHelp).byte1(0).end().begin('C').str("SHOW").end().readyForQuery('I').b, false
		}
		if what == "FDS" && !admin {
			return fail("42501", "admin access needed")
		}
		rs, err := p.show(what)
		if err != nil {
			return fail("42601", err.Error())
		}
		m.rowDescription(rs.cols)
		for _, r := range rs.rows {
			m.dataRow(r)
		}
		return m.begin('C').str("SHOW").end().readyForQuery('I').b, false
	}
	if !admin {
		return fail("42501", "admin access needed")
	}
	if err := p.adminCommand(cmd, arg, len(words) > 2); err != nil {
		return fail(err.code, err.msg)
	}
	return m.begin('C').str(cmd).end().readyForQuery('I').b, cmd == "SHUTDOWN"
}

const consoleHelp = `
	SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
	SHOW FDS|LISTS|MEM|STATE
	SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
	RELOAD
	PAUSE [<db>]
	RESUME [<db>]
	DISABLE <db>
	ENABLE <db>
	RECONNECT [<db>]
	KILL [<db>]
	KILL_CLIENT <client_id>
	SHUTDOWN
	WAIT_CLOSE [<db>]`

// adminError is a console command's refusal.
type adminError struct{ code, msg string }

func syntaxErr(format string, args ...any) *adminError {
	return &adminError{code: "42601", msg: fmt.Sprintf(format, args...)}
}

// adminCommand runs one command of admin_users.
func (p *Pooler) adminCommand(cmd, arg string, extra bool) *adminError {
	if extra {
		return syntaxErr("%s takes at most one argument", cmd)
	}
	noSuchDB := func() *adminError { return &adminError{code: "08P01", msg: "no such database: " + arg} }
	isConsole := arg == "pgbouncer" || arg == "pgha"
	switch cmd {
	case "PAUSE":
		if p.paused.Load() {
			return &adminError{code: "08P01", msg: "already suspended/paused"}
		}
		if isConsole {
			return &adminError{code: "08P01", msg: "cannot pause admin db: " + arg}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if arg == "" {
			p.paused.Store(true)
		} else if !p.knownDB(arg) {
			return noSuchDB()
		} else {
			p.dbState(arg).paused.Store(true)
		}
		// As PgBouncer, PAUSE returns once the database's server
		// connections are released, and closes them.
		if err := p.waitIdle(ctx, arg); err != nil {
			return &adminError{code: codeConnFailure, msg: err.Error()}
		}
		p.reconnectDB(arg, false)
	case "RESUME":
		if arg == "" {
			if !p.paused.Load() && !p.anyDBPaused() {
				return &adminError{code: "08P01", msg: "pooler is not paused/suspended"}
			}
			p.Resume()
			p.mu.Lock()
			for _, st := range p.dbStates {
				st.paused.Store(false)
			}
			p.mu.Unlock()
		} else {
			st := p.dbStateIf(arg)
			if st == nil {
				return noSuchDB()
			}
			if !st.paused.Load() {
				return &adminError{code: "08P01", msg: fmt.Sprintf("database %s is not paused", arg)}
			}
			st.paused.Store(false)
		}
		for _, pl := range p.poolList() {
			pl.wakeAll()
		}
	case "DISABLE", "ENABLE":
		if arg == "" {
			return &adminError{code: "08P01", msg: "a database is required"}
		}
		if isConsole {
			return &adminError{code: "08P01", msg: "cannot disable admin db: " + arg}
		}
		if !p.knownDB(arg) {
			return noSuchDB()
		}
		p.dbState(arg).disabled.Store(cmd == "DISABLE")
	case "RELOAD":
		if arg != "" {
			return syntaxErr("RELOAD takes no argument")
		}
		if err := p.loadAuth(); err != nil {
			return &adminError{code: "F0000", msg: err.Error()}
		}
	case "RECONNECT":
		if isConsole {
			return &adminError{code: "08P01", msg: "cannot reconnect admin db: " + arg}
		}
		if arg != "" && !p.knownDB(arg) {
			return noSuchDB()
		}
		p.reconnectDB(arg, false)
	case "KILL":
		if p.paused.Load() {
			return &adminError{code: "08P01", msg: "already suspended/paused"}
		}
		if isConsole {
			return &adminError{code: "08P01", msg: "cannot kill admin db: " + arg}
		}
		if arg != "" && !p.knownDB(arg) {
			return noSuchDB()
		}
		p.kill(arg)
	case "KILL_CLIENT":
		id, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return &adminError{code: "08P01", msg: "invalid client pointer supplied"}
		}
		c := p.clientByID(id)
		if c == nil {
			return &adminError{code: "08P01", msg: "client not found"}
		}
		c.endBy(errKilledAdmin)
	case "WAIT_CLOSE":
		if isConsole {
			return &adminError{code: "08P01", msg: "cannot wait in admin db: " + arg}
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && p.closeNeeded(arg) > 0 {
			p.reconnectDB(arg, false)
			time.Sleep(20 * time.Millisecond)
		}
	case "SHUTDOWN":
		if arg != "" {
			return syntaxErr("SHUTDOWN WAIT_FOR_SERVERS and WAIT_FOR_CLIENTS are not supported: stop pgha instead")
		}
		p.shutOnce.Do(func() { close(p.shutdown) })
	case "SUSPEND":
		return &adminError{code: codeFeatureNotSupp, msg: "SUSPEND is not supported (it serves PgBouncer's online restart, which pgha does not have)"}
	case "SET":
		return &adminError{code: codeFeatureNotSupp, msg: "SET is not supported: change the pooler section of pgha's config and reload"}
	default:
		return syntaxErr("unknown command %q: try SHOW HELP", cmd)
	}
	return nil
}

// knownDB reports whether a console command may name db: a configured
// [databases] entry, a database with pools, or any name when every name
// is served.
func (p *Pooler) knownDB(db string) bool {
	if _, ok := p.dbEntry(db); ok && db != "*" {
		return true
	}
	return p.dbStateIf(db) != nil
}

// dbStateIf returns a database name's console state if it has one.
func (p *Pooler) dbStateIf(db string) *dbState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dbStates[db]
}

func (p *Pooler) anyDBPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.dbStates {
		if st.paused.Load() {
			return true
		}
	}
	return false
}

// waitIdle waits until no server connection of db ("" for all) is in
// use, or ctx ends.
func (p *Pooler) waitIdle(ctx context.Context, db string) error {
	for {
		busy := 0
		for _, pl := range p.poolList() {
			if db == "" || pl.key.db == db {
				a, _, _, _ := pl.counts()
				busy += a
			}
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pooler: pause: %d server connections still busy: %w", busy, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// reconnectDB closes db's ("" for all) idle server connections now and
// the others when released (at once with force).
func (p *Pooler) reconnectDB(db string, force bool) {
	for _, pl := range p.poolList() {
		if db != "" && pl.key.db != db {
			continue
		}
		for _, s := range pl.servers() {
			s.closeNeeded.Store(true)
		}
		pl.closeIdle(func(*server) bool { return true })
		if force {
			for _, s := range pl.servers() {
				s.close()
			}
		}
	}
}

// closeNeeded counts db's server connections waiting to be closed.
func (p *Pooler) closeNeeded(db string) int {
	n := 0
	for _, pl := range p.poolList() {
		if db == "" || pl.key.db == db {
			for _, s := range pl.servers() {
				if s.closeNeeded.Load() {
					n++
				}
			}
		}
	}
	return n
}

// clientByID finds a client by the id SHOW CLIENTS shows.
func (p *Pooler) clientByID(id uint64) *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.clients {
		if c.id == id {
			return c
		}
	}
	return nil
}

// hostPort splits a target for SHOW SERVERS; a socket path shows as
// PgBouncer shows one: addr "unix" and the port from .s.PGSQL.<port>.
func hostPort(a string) (string, int) {
	if i := strings.LastIndex(a, ".s.PGSQL."); strings.HasPrefix(a, "/") && i >= 0 {
		n, _ := strconv.Atoi(a[i+len(".s.PGSQL."):])
		return "unix", n
	}
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func (p *Pooler) clientList() []*client {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*client, 0, len(p.clients))
	for c := range p.clients {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// kill drops every client and server connection of db ("" for all) and
// pauses it, as PgBouncer's KILL: new transactions wait for RESUME. Each
// client gets PgBouncer's "database removed".
func (p *Pooler) kill(db string) {
	if db == "" {
		p.paused.Store(true)
	} else {
		p.dbState(db).paused.Store(true)
	}
	for _, c := range p.clientList() {
		if db == "" || c.db == db {
			c.endBy(errKilledDB)
		}
	}
	for _, pl := range p.poolList() {
		if db == "" || pl.key.db == db {
			for _, s := range pl.servers() {
				s.close()
			}
		}
	}
}
