package restapi

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/config"
)

// MaxBodyBytes bounds a request body; larger bodies answer 413.
const MaxBodyBytes = 1 << 20

// localTimeout bounds Node.Local for one request.
const localTimeout = 2 * time.Second

// Server is the REST API of one node.
type Server struct {
	cfg     config.RESTAPI
	node    Node
	actions Actions
	log     *slog.Logger
	handler http.Handler
	started time.Time
	metrics *HAMetrics
	hosts   *hostPolicy

	// PollInterval and PollTimeout bound how long a switchover or failover
	// request waits for the new leader (Patroni waits 20 s).
	PollInterval time.Duration
	PollTimeout  time.Duration
	// Now is the clock (tests replace it).
	Now func() time.Time

	listener net.Listener
}

// New builds the API for one node. registry receives the node's Patroni
// metrics, the HA metrics (see Metrics) and the Go runtime and process
// collectors; nil means a fresh registry.
func New(cfg config.RESTAPI, node Node, actions Actions, registry *prometheus.Registry, logger *slog.Logger) (*Server, error) {
	if node == nil || actions == nil {
		return nil, errors.New("restapi: New needs a Node and Actions")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if registry == nil {
		registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, node: node, actions: actions, log: logger.With("component", "restapi"),
		started: time.Now(), PollInterval: 250 * time.Millisecond, PollTimeout: 20 * time.Second, Now: time.Now,
		hosts: newHostPolicy(cfg)}
	m, err := registerMetrics(registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.handler = s.routes(registry)
	return s, nil
}

// Metrics returns the HA counters and histogram the daemon feeds (loop
// duration, failovers, switchovers).
func (s *Server) Metrics() *HAMetrics { return s.metrics }

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds cfg.Listen. Run calls it when it has not been called; call
// it first to learn the bound address (Addr) before Run.
func (s *Server) Listen() error {
	if s.listener != nil {
		return nil
	}
	addr := s.cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:8008"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("restapi: listen on %s: %w", addr, err)
	}
	s.listener = l
	return nil
}

// Addr is the bound address, "" before Listen.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully (in-flight
// requests get 5 s).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	l := s.listener
	if s.cfg.CertFile != "" {
		tc, err := s.tlsConfig()
		if err != nil {
			l.Close()
			return err
		}
		l = tls.NewListener(l, tc)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.log.Info("REST API listening", "addr", s.Addr(), "tls", s.cfg.CertFile != "")
	select {
	case err := <-errc:
		return fmt.Errorf("restapi: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("restapi: shutdown: %w", err)
	}
	return nil
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("restapi: load restapi.certfile %s / keyfile %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	s.hosts.cert.Store(cert.Leaf)
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// verify_client as Patroni: none asks for no client certificate,
	// optional checks one when given (unsafe methods then need it, see
	// guardUnsafe), required refuses the handshake without one.
	switch s.cfg.VerifyClient {
	case config.VerifyClientOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case config.VerifyClientRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.cfg.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("restapi: read restapi.cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("restapi: restapi.cafile %s holds no PEM certificate", s.cfg.CAFile)
		}
		tc.ClientCAs = pool
	}
	return tc, nil
}

// facts gathers what one request needs.
func (s *Server) facts(ctx context.Context) facts {
	v, ok := s.node.View()
	lctx, cancel := context.WithTimeout(ctx, localTimeout)
	defer cancel()
	return facts{st: s.node.Local(lctx), view: v, dcsOK: ok, now: s.Now()}
}

// requireAuth answers 401 to unsafe requests without the configured
// basic-auth credentials.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	want := s.cfg.Authentication
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want.Username == "" {
			next.ServeHTTP(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		reason := ""
		switch {
		case r.Header.Get("Authorization") == "":
			reason = "no auth header received"
		case !ok || subtle.ConstantTimeCompare([]byte(u), []byte(want.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(want.Password)) != 1:
			reason = "not authenticated"
		}
		if reason != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="pgha"`)
			writeText(w, http.StatusUnauthorized, reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errBody is a body that is not a JSON object (400); errTooLarge one
// over MaxBodyBytes (413).
var (
	errBody     = errors.New("restapi: bad request body")
	errTooLarge = errors.New("restapi: request body too large")
)

// readJSON reads a JSON object body of at most MaxBodyBytes. An empty body
// gives an empty map when optional.
func readJSON(w http.ResponseWriter, r *http.Request, optional bool) (map[string]any, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("%w: body larger than %d bytes: send at most 1 MiB", errTooLarge, MaxBodyBytes)
		}
		return nil, fmt.Errorf("%w: body unreadable: %v", errBody, err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return map[string]any{}, nil
		}
		return nil, fmt.Errorf("%w: empty body, want a JSON object", errBody)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: want a JSON object", errBody)
	}
	if len(m) == 0 && !optional {
		return nil, fmt.Errorf("%w: empty JSON object", errBody)
	}
	return m, nil
}

// badBody answers a readJSON error: 413 for an oversized body, 400
// otherwise, with the reason.
func badBody(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, errTooLarge) {
		code = http.StatusRequestEntityTooLarge
	}
	writeText(w, code, err.Error())
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "restapi: encode response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// statusFor maps an Actions error to Patroni's status code.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrNotPossible):
		return http.StatusPreconditionFailed
	case errors.Is(err, ErrBadRequest), errors.Is(err, errBody):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// routes builds the chi router.
func (s *Server) routes(reg *prometheus.Registry) http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	if s.cfg.TLS() && s.cfg.VerifyClient == config.VerifyClientRequired {
		r.Use(s.requireClientCert)
	}
	r.Get("/patroni", s.getPatroni)
	r.Get("/cluster", s.getCluster)
	r.Get("/history", s.getHistory)
	r.Get("/config", s.getConfig)
	r.Get("/metrics", metricsHandler(reg))
	r.Get("/liveness", s.getLiveness)
	r.Head("/liveness", s.getLiveness)
	r.Get("/readiness", s.getReadiness)
	r.Head("/readiness", s.getReadiness)
	r.Group(func(r chi.Router) {
		r.Use(s.guardUnsafe, s.requireAuth, requireJSON)
		r.Patch("/config", s.patchConfig)
		r.Put("/config", s.putConfig)
		r.Post("/switchover", s.postSwitchover)
		r.Post("/failover", s.postFailover)
		r.Delete("/switchover", s.deleteSwitchover)
		r.Post("/restart", s.postRestart)
		r.Delete("/restart", s.deleteRestart)
		r.Post("/reload", s.postReload)
		r.Post("/reinitialize", s.postReinitialize)
	})
	// Every other GET, HEAD and OPTIONS is a health check, as in Patroni.
	r.NotFound(s.health)
	r.MethodNotAllowed(s.health)
	return r
}

// recoverer turns a handler panic into a 500 and a log line, never a crash.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("REST handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeText(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// health answers the role health checks for GET (with the /patroni body),
// HEAD and OPTIONS (status only); other methods on unknown paths get 405
// or 404.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		writeText(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	f := s.facts(r.Context())
	code := healthCode(r.URL.Path, r.URL.Query(), f)
	if r.Method != http.MethodGet {
		w.WriteHeader(code)
		return
	}
	writeJSON(w, code, statusDoc(f))
}

func (s *Server) getPatroni(w http.ResponseWriter, r *http.Request) {
	f := s.facts(r.Context())
	if d, ok := s.node.(Detailer); ok && f.st.Queried {
		ctx, cancel := context.WithTimeout(r.Context(), localTimeout)
		d.Detail(ctx, &f.st)
		cancel()
	}
	writeJSON(w, http.StatusOK, statusDoc(f))
}

func (s *Server) getLiveness(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(liveness(s.facts(r.Context()), s.started))
}

func (s *Server) getReadiness(w http.ResponseWriter, r *http.Request) {
	why := readiness(r.URL.Query(), s.facts(r.Context()))
	if why != "" {
		s.log.Debug("readiness check failed", "reason", why)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	v, _ := s.node.View()
	writeJSON(w, http.StatusOK, NewClusterDoc(v))
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	v, _ := s.node.View()
	writeJSON(w, http.StatusOK, historyDoc(v))
}
