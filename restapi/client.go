package restapi

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/pgha/pgha/config"
)

// ClientTLS is how a REST client (pghactl, a node asking its peers) checks
// members' APIs over https and proves itself to them, as Patroni's
// PatroniRequest reads it: the server certificate is verified against
// ctl.cacert, else restapi.cafile, else the system's roots (ctl.insecure
// or insecure skips that); ctl.certfile/keyfile is presented as the
// client certificate when set. It is one rule with one home: both
// clients call it.
func ClientTLS(ctl config.Ctl, api config.RESTAPI, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure || ctl.Insecure} //nolint:gosec // the operator's ctl.insecure / -k
	key, caFile := "ctl.cacert", ctl.CACert
	if caFile == "" {
		key, caFile = "restapi.cafile", api.CAFile
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("restapi: read %s: %w", key, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("restapi: %s %s holds no PEM certificate", key, caFile)
		}
		tc.RootCAs = pool
	}
	if ctl.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ctl.CertFile, ctl.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("restapi: load ctl.certfile %s / keyfile %s: %w", ctl.CertFile, ctl.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
