package leader

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/pgha/pgha/cluster"
)

// peerTimeout bounds the REST probe of all peers together.
const peerTimeout = 700 * time.Millisecond

// peerClient is the HTTP client the loop asks peers' REST APIs with. tc
// (built by restapi.ClientTLS from ctl and restapi.cafile) checks an
// https api_url's certificate and presents this node's client
// certificate; nil checks against the system's roots and presents none.
func peerClient(tc *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: peerTimeout, Transport: tr}
}

// peerDoc is the part of a peer's GET /patroni document (Patroni's
// format) the failover check reads.
type peerDoc struct {
	State string `json:"state"`
	Role  string `json:"role"`
	XLog  struct {
		Location         int64 `json:"location"`
		ReceivedLocation int64 `json:"received_location"`
		ReplayedLocation int64 `json:"replayed_location"`
	} `json:"xlog"`
}

// probePeers refreshes peers' positions from their REST API (DESIGN rule
// 2): member keys can be a loop_wait old. A peer that does not answer
// within the timeout keeps what its member key says.
func probePeers(ctx context.Context, hc *http.Client, v cluster.View, peers []Peer) []Peer {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	out := append([]Peer(nil), peers...)
	var wg sync.WaitGroup
	for i := range out {
		m, ok := v.Member(out[i].Name)
		if !ok || m.APIURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := fetchPeer(ctx, hc, m.APIURL)
			if err != nil {
				return
			}
			p := &out[i]
			p.Running = d.State == string(cluster.StateRunning)
			p.InRecovery = d.Role != string(cluster.RolePrimary) && d.Role != "master"
			if p.InRecovery {
				p.Position = max(d.XLog.ReceivedLocation, d.XLog.ReplayedLocation)
			} else {
				p.Position = d.XLog.Location
			}
		}()
	}
	wg.Wait()
	return out
}

func fetchPeer(ctx context.Context, hc *http.Client, url string) (peerDoc, error) {
	var d peerDoc
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return d, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	// Patroni answers 200 or 503 with the same document.
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d)
	return d, err
}
