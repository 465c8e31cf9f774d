package config

import (
	"net"
	"strings"
)

// Ctl says how REST clients reach members' APIs: pghactl, and this node's
// own probes of its peers (DESIGN rule 2). Patroni's ctl section, same
// key names.
type Ctl struct {
	// CACert verifies the APIs' server certificates; empty falls back to
	// restapi.cafile, then to the system's roots.
	CACert string `yaml:"cacert" json:"cacert"`
	// CertFile and KeyFile are the client certificate presented to APIs
	// that check them (restapi.verify_client optional or required).
	CertFile string `yaml:"certfile" json:"certfile"`
	KeyFile  string `yaml:"keyfile" json:"keyfile"`
	// Insecure skips the check of the APIs' certificates (pghactl -k).
	Insecure bool `yaml:"insecure" json:"insecure"`
}

// restapi.verify_client values, as Patroni names them.
const (
	VerifyClientNone     = "none"
	VerifyClientOptional = "optional"
	VerifyClientRequired = "required"
)

// TLS reports whether the API serves https (restapi.certfile is set).
func (r RESTAPI) TLS() bool { return r.CertFile != "" }

// APIURL is the address published in the member key's api_url:
// https://connect_address/patroni when the API serves TLS, http:// else.
// Peers and pghactl reach the API through it.
func (r RESTAPI) APIURL() string {
	scheme := "http"
	if r.TLS() {
		scheme = "https"
	}
	return scheme + "://" + r.ConnectAddress + "/patroni"
}

// ChecksClientCerts reports whether unsafe methods need a verified client
// certificate (verify_client optional or required): an authentication
// of its own, as basic auth is.
func (r RESTAPI) ChecksClientCerts() bool {
	return r.TLS() && (r.VerifyClient == VerifyClientOptional || r.VerifyClient == VerifyClientRequired)
}

// IsLoopback reports whether a listen address (host:port) accepts
// connections from this machine only: localhost or a loopback IP. A
// wildcard (":8008", 0.0.0.0, ::) or any other name is not loopback.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateRESTAPI checks the keys that protect the REST API. Its unsafe
// methods (switchover, failover, restart, reinitialize, config changes)
// are open to anyone who can reach the port unless authentication is
// set, so an API that listens beyond loopback without basic auth or
// client certificates is refused unless the operator accepts that with
// restapi.allow_unauthenticated_writes: true.
func (c *Config) validateRESTAPI(p *problems) {
	r := c.RESTAPI
	switch r.VerifyClient {
	case "", VerifyClientNone:
	case VerifyClientOptional, VerifyClientRequired:
		if !r.TLS() {
			p.add("restapi.verify_client", "%s checks client certificates during the TLS handshake: set restapi.certfile and restapi.keyfile, or verify_client: none", r.VerifyClient)
		}
		if r.CAFile == "" {
			p.add("restapi.cafile", "missing: verify_client %s checks client certificates against the CA in cafile", r.VerifyClient)
		}
	default:
		p.add("restapi.verify_client", "%q is not none, optional or required", r.VerifyClient)
	}
	if r.Listen != "" && !IsLoopback(r.Listen) && r.Authentication.Username == "" && !r.ChecksClientCerts() && !r.AllowUnauthenticatedWrites {
		p.add("restapi.authentication", "missing while restapi.listen %s accepts connections from other machines: anyone who reaches the port could switch over, fail over, restart or reinitialize this node. "+
			"Set restapi.authentication.username and .password (or client certificates: restapi.certfile, cafile and verify_client: required), "+
			"listen on 127.0.0.1, or accept open writes with restapi.allow_unauthenticated_writes: true", r.Listen)
	}
	if (c.Ctl.CertFile == "") != (c.Ctl.KeyFile == "") {
		p.add("ctl.certfile", "certfile and keyfile must be set together")
	}
}
