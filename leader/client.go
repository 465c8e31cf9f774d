package leader

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/config"
)

// DefaultDialTimeout bounds connecting to etcd when etcd.dial_timeout is
// not set.
const DefaultDialTimeout = 5 * time.Second

// NewClient connects to etcd as a node file's etcd section says; the
// daemon and pghactl both build their client here (ClientConfig).
func NewClient(e config.Etcd) (*clientv3.Client, error) {
	cfg, err := ClientConfig(e)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader: connect to etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return cli, nil
}

// ClientConfig is the etcd client configuration for e: the endpoints as
// URLs (EndpointURLs), TLS when etcd.cacert or etcd.cert is set or an
// endpoint is https:// (the CA from etcd.cacert, else the system's; the
// client certificate from etcd.cert and etcd.key), etcd.username and
// etcd.password, and etcd.dial_timeout (DefaultDialTimeout when unset).
func ClientConfig(e config.Etcd) (clientv3.Config, error) {
	eps := EndpointURLs(e)
	if len(eps) == 0 {
		return clientv3.Config{}, fmt.Errorf("leader: no etcd endpoints: set etcd.endpoints")
	}
	useTLS := e.TLS()
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") {
			useTLS = true
		}
	}
	if useTLS {
		for _, ep := range eps {
			if strings.HasPrefix(ep, "http://") {
				return clientv3.Config{}, fmt.Errorf("leader: etcd endpoint %s is plain HTTP while TLS is in use (etcd.cacert, etcd.cert or another https:// endpoint): write https://", ep)
			}
		}
	}
	dial := e.DialTimeout.D()
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: dial,
		// gRPC keepalive finds a connection to a member that went silent
		// (a partition drops packets: TCP alone would wait minutes), so
		// requests move to the other members. 5 s is the least etcd's
		// default --grpc-keepalive-min-time accepts.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		PermitWithoutStream:  true,
		Username:             e.Username,
		Password:             e.Password,
		Logger:               zap.NewNop(),
	}
	if useTLS {
		tc, err := clientTLS(e)
		if err != nil {
			return clientv3.Config{}, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// EndpointURLs returns e's endpoints as URLs: host:port becomes
// https://host:port when etcd.cacert or etcd.cert is set or another
// endpoint is https://, else http://host:port; URLs are kept (without a
// trailing slash).
func EndpointURLs(e config.Etcd) []string {
	scheme := "http://"
	if e.TLS() {
		scheme = "https://"
	}
	var eps []string
	for _, ep := range e.Endpoints {
		ep = strings.TrimSuffix(strings.TrimSpace(ep), "/")
		if ep == "" {
			continue
		}
		if strings.HasPrefix(ep, "https://") {
			scheme = "https://"
		}
		eps = append(eps, ep)
	}
	for i, ep := range eps {
		if !strings.Contains(ep, "://") {
			eps[i] = scheme + ep
		}
	}
	return eps
}

func clientTLS(e config.Etcd) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.CACert != "" {
		pem, err := os.ReadFile(e.CACert)
		if err != nil {
			return nil, fmt.Errorf("leader: etcd.cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("leader: etcd.cacert %s holds no PEM certificate", e.CACert)
		}
		tc.RootCAs = pool
	}
	if e.Cert != "" || e.Key != "" {
		if e.Cert == "" || e.Key == "" {
			return nil, fmt.Errorf("leader: etcd.cert and etcd.key must be set together")
		}
		cert, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return nil, fmt.Errorf("leader: etcd.cert/etcd.key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// NewMemberClients opens one client per etcd endpoint (none for a single
// endpoint): the lease's keepalives go to every member at once, so a
// member cut off from the others (its requests hang, it cannot answer)
// never delays a renewal. The caller closes them.
func NewMemberClients(e config.Etcd) ([]*clientv3.Client, error) {
	eps := EndpointURLs(e)
	if len(eps) < 2 {
		return nil, nil
	}
	var out []*clientv3.Client
	for _, ep := range eps {
		one := e
		one.Endpoints = []string{ep}
		cli, err := NewClient(one)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, err
		}
		out = append(out, cli)
	}
	return out, nil
}
