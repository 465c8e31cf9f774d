package pooler

import "sync"

// Router tells the pooler where to send connections. The daemon implements
// it over the cluster view; Changed fires (non-blocking send or close of a
// fresh channel) whenever Primary or Replicas may have changed.
type Router interface {
	// Primary is the current primary's host:port, ok false while there is
	// none (new transactions then wait, bounded by query_wait_timeout).
	Primary() (addr string, ok bool)
	// Replicas are host:port of healthy replicas for read_only_listen.
	Replicas() []string
	// Changed is signalled after the answers above change.
	Changed() <-chan struct{}
}

// StaticRouter is a Router with fixed addresses, for tests, benchmarks and
// single-node use. Set changes it and signals Changed.
type StaticRouter struct {
	mu       sync.Mutex
	primary  string
	replicas []string
	ch       chan struct{}
}

// NewStaticRouter routes writes to primary ("" for none) and reads to
// replicas.
func NewStaticRouter(primary string, replicas ...string) *StaticRouter {
	return &StaticRouter{primary: primary, replicas: replicas, ch: make(chan struct{}, 1)}
}

// Primary implements Router.
func (r *StaticRouter) Primary() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.primary, r.primary != ""
}

// Replicas implements Router.
func (r *StaticRouter) Replicas() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.replicas...)
}

// Changed implements Router.
func (r *StaticRouter) Changed() <-chan struct{} { return r.ch }

// Set replaces the addresses and signals Changed.
func (r *StaticRouter) Set(primary string, replicas ...string) {
	r.mu.Lock()
	r.primary, r.replicas = primary, replicas
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}
