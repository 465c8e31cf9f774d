package pooler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// auth_query: users missing from auth_file are looked up in Postgres as
// auth_user (often the superuser), so a login that the pooler has not
// checked yet runs SQL there. The user name is sent as a bound parameter,
// never spliced into the query; answers (found or not) are cached for
// authCacheTTL, only the secret (a wrong password is checked against it
// every time, never remembered); and at most authQueryConns lookups run
// at once, the others waiting no longer than their login may take.
const (
	authCacheTTL   = 5 * time.Second
	authCacheMax   = 10000
	authQueryConns = 4
)

// authEntry is one cached auth_query answer.
type authEntry struct {
	sec     secret
	found   bool
	expires time.Time
}

// authCache holds recent auth_query answers by (database, user).
type authCache struct {
	mu    sync.Mutex
	m     map[string]authEntry
	sem   chan struct{}
	group singleflight.Group
	// queries run, and lookups running and waiting for a slot now.
	queries, running, waiting atomic.Int64
}

func (a *authCache) init() {
	a.m = make(map[string]authEntry)
	a.sem = make(chan struct{}, authQueryConns)
}

func (a *authCache) get(key string, now time.Time) (authEntry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	if ok && now.After(e.expires) {
		delete(a.m, key)
		return authEntry{}, false
	}
	return e, ok
}

// put remembers an answer; a full cache drops its expired entries, then
// arbitrary ones, so that a stream of made-up user names cannot grow it.
func (a *authCache) put(key string, e authEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.m) >= authCacheMax {
		now := time.Now()
		for k, v := range a.m {
			if now.After(v.expires) {
				delete(a.m, k)
			}
		}
		for k := range a.m {
			if len(a.m) < authCacheMax*9/10 {
				break
			}
			delete(a.m, k)
		}
	}
	a.m[key] = e
}

// forget empties the cache (RELOAD).
func (a *authCache) forget() {
	a.mu.Lock()
	clear(a.m)
	a.mu.Unlock()
}

// lookupUser finds a user's secret in auth_file, else through auth_query
// (cached), bounded by deadline (the client's login deadline; zero: the
// server connect timeout).
func (p *Pooler) lookupUser(user, db string, deadline time.Time) (secret, bool, error) {
	p.mu.Lock()
	sec, ok := p.users[user]
	p.mu.Unlock()
	if ok || p.cfg.AuthQuery == "" {
		return sec, ok, nil
	}
	key := db + "\x00" + user
	if e, hit := p.auth.get(key, time.Now()); hit {
		return e.sec, e.found, nil
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(p.cfg.ServerConnectTimeout.D())
	}
	ch := p.auth.group.DoChan(key, func() (any, error) {
		e, err := p.runAuthQuery(user, db, deadline)
		if err == nil {
			e.expires = time.Now().Add(authCacheTTL)
			p.auth.put(key, e)
		}
		return e, err
	})
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case r := <-ch:
		if r.Err != nil {
			return secret{}, false, r.Err
		}
		e := r.Val.(authEntry)
		return e.sec, e.found, nil
	case <-t.C:
		return secret{}, false, errors.New("pooler: auth_query: no answer before the client's login deadline")
	case <-p.done:
		return secret{}, false, errors.New("pooler: shutting down")
	}
}

// runAuthQuery runs auth_query for user on db as auth_user, once a slot
// of the authQueryConns is free (waiting until deadline at most).
func (p *Pooler) runAuthQuery(user, db string, deadline time.Time) (authEntry, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	p.auth.waiting.Add(1)
	select {
	case p.auth.sem <- struct{}{}:
		p.auth.waiting.Add(-1)
		p.auth.running.Add(1)
		defer func() {
			p.auth.running.Add(-1)
			<-p.auth.sem
		}()
	case <-t.C:
		p.auth.waiting.Add(-1)
		return authEntry{}, fmt.Errorf("pooler: auth_query: %d lookups already running; none finished before the login deadline", authQueryConns)
	case <-p.done:
		p.auth.waiting.Add(-1)
		return authEntry{}, errors.New("pooler: shutting down")
	}
	p.auth.queries.Add(1)
	if h := p.hooks.authQuery; h != nil {
		h()
	}
	p.mu.Lock()
	asec, aok := p.users[p.cfg.AuthUser]
	p.mu.Unlock()
	if !aok {
		return authEntry{}, fmt.Errorf("pooler: auth_user %q is not in auth_file", p.cfg.AuthUser)
	}
	// The query runs in the database the client asked for (its name on
	// Postgres), with none of the client's settings.
	tmp := &pool{p: p, key: poolKey{db: db, user: p.cfg.AuthUser}, cred: asec,
		conf: poolConf{dbname: p.resolve(db, p.cfg.AuthUser).dbname}}
	addr, err := p.target(false)
	if err != nil {
		return authEntry{}, err
	}
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()
	s, err := p.dialServer(ctx, tmp, addr)
	if err != nil {
		return authEntry{}, fmt.Errorf("pooler: auth_query login as %q: %w", p.cfg.AuthUser, err)
	}
	defer s.close()
	rows, err := s.paramQuery(p.cfg.AuthQuery, []string{user}, deadline)
	if err != nil {
		return authEntry{}, fmt.Errorf("pooler: auth_query: %w", err)
	}
	if len(rows) == 0 || len(rows[0]) < 2 || rows[0][1] == nil {
		return authEntry{}, nil
	}
	return authEntry{sec: parseSecret(*rows[0][1]), found: true}, nil
}
