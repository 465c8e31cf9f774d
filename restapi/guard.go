package restapi

import (
	"crypto/x509"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"github.com/pgha/pgha/config"
)

// The guards in this file stand in front of the unsafe methods (POST,
// PUT, PATCH, DELETE), so that a web browser on an operator's machine
// cannot be turned against the API (say on 127.0.0.1:8008) by a page it
// visits:
//
//   - A cross-site request is refused (403): an Origin header whose
//     scheme://host:port is not the request's own (browsers send Origin
//     with every non-GET request, "null" included), or Sec-Fetch-Site
//     cross-site or same-site. Tools (curl, pghactl, patronictl) send
//     neither header.
//   - A Host header that is not one of this node's names is refused
//     (403). This stops DNS rebinding, where a page's own name is made to
//     resolve to 127.0.0.1 so that its requests look same-origin: the
//     browser then sends the page's name as Host. Accepted: no Host at
//     all (HTTP/1.0 tools), any IP address literal (rebinding needs a DNS
//     name; an IP-literal origin is the address itself), localhost, the
//     hosts of restapi.listen and restapi.connect_address, this
//     machine's hostname, and the names restapi.certfile is valid for.
//   - A body must be JSON: a Content-Type other than application/json
//     answers 415, which also refuses what HTML forms can send
//     (text/plain, urlencoded, multipart). No Content-Type is accepted
//     because patronictl sends its JSON bodies without one; a request
//     without a body passes whatever its Content-Type.
//
// Safe methods (GET, HEAD, OPTIONS) change nothing and pass unchecked, so
// that HAProxy, Prometheus and load balancers may call the node by any
// name; pgha sends no CORS headers, so a page of another origin cannot
// read the answers either.

// hostPolicy is the set of names a Host header may carry for unsafe
// methods.
type hostPolicy struct {
	names map[string]bool
	// cert is the serving certificate once Run loaded it; its names are
	// accepted too.
	cert atomic.Pointer[x509.Certificate]
}

func newHostPolicy(cfg config.RESTAPI) *hostPolicy {
	h := &hostPolicy{names: map[string]bool{"localhost": true}}
	for _, hp := range []string{cfg.Listen, cfg.ConnectAddress} {
		if host, _, err := net.SplitHostPort(hp); err == nil && host != "" {
			h.names[canonHost(host)] = true
		}
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		h.names[canonHost(name)] = true
	}
	return h
}

// canonHost lower-cases a host name and drops brackets and a trailing dot.
func canonHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "."))
}

// allowed reports whether hostHeader (host or host:port) names this node.
func (h *hostPolicy) allowed(hostHeader string) bool {
	if hostHeader == "" {
		return true
	}
	host := hostHeader
	if hh, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = hh
	}
	host = canonHost(host)
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if h.names[host] {
		return true
	}
	if c := h.cert.Load(); c != nil && host != "" && c.VerifyHostname(host) == nil {
		return true
	}
	return false
}

// crossSite says why r comes from another site's web page, "" when it
// does not.
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "cross-site", "same-site":
		return "cross-site request refused (Sec-Fetch-Site: " + site + "): send management requests with curl, pghactl or patronictl, not from a web page"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(origin)
	if origin == "null" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		hostPort(u.Host, u.Scheme) != hostPort(r.Host, scheme) {
		return "cross-site request refused: Origin " + origin + " is not this API (" + scheme + "://" + r.Host +
			"): send management requests with curl, pghactl or patronictl, not from a web page of another origin"
	}
	return ""
}

// hostPort is host:port in lower case with the scheme's default port
// filled in.
func hostPort(hp, scheme string) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		host = hp
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return canonHost(host) + ":" + port
}

// guardUnsafe refuses unsafe requests without the client certificate
// verify_client asks for, from other sites' web pages, or naming another
// host (see the comment at the top of this file).
func (s *Server) guardUnsafe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.ChecksClientCerts() && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			writeText(w, http.StatusForbidden, "client certificate required: restapi.verify_client is "+s.cfg.VerifyClient+
				"; present a certificate signed by restapi.cafile (pghactl: ctl.certfile and ctl.keyfile)")
			return
		}
		if why := crossSite(r); why != "" {
			s.log.Warn("refused cross-site request", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
			writeText(w, http.StatusForbidden, why)
			return
		}
		if !s.hosts.allowed(r.Host) {
			s.log.Warn("refused request for another host", "method", r.Method, "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
			writeText(w, http.StatusForbidden, "Host "+r.Host+" is not a name of this node: unsafe requests must address it by IP, localhost, "+
				"the host of restapi.listen or restapi.connect_address, its hostname, or a name in restapi.certfile (a guard against DNS rebinding)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireClientCert refuses every request without a verified client
// certificate (verify_client: required; the TLS handshake already asks,
// this is the same rule said twice for requests that reach the handler
// some other way).
func (s *Server) requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeText(w, http.StatusForbidden, "client certificate required: restapi.verify_client is required; present a certificate signed by restapi.cafile")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSON answers 415 to an unsafe request whose body is declared as
// something other than JSON.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		if r.ContentLength == 0 || ct == "" {
			next.ServeHTTP(w, r)
			return
		}
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
			next.ServeHTTP(w, r)
			return
		}
		writeText(w, http.StatusUnsupportedMediaType, "Content-Type "+ct+" is not application/json: send the body as JSON with "+
			"Content-Type: application/json (curl: -H 'Content-Type: application/json')")
	})
}
