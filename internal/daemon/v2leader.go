package daemon

// The leader key's copy in etcd's v2 store (etcd.v2_leader_key), for
// tools that read only the v2 API: vip-manager 1.x (Debian 12's) watches
// /<namespace>/<scope>/leader there, where Patroni's etcd (v2) section
// wrote it. The v3 key, with its lease, stays the only one pgha decides
// on; the copy is written while this node holds it.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/leader"
)

// v2Leader writes the copy through one of the endpoints.
type v2Leader struct {
	eps        []string
	user, pass string
	key        string // /<namespace>/<scope>/leader
	name       string
	http       *http.Client
}

func newV2Leader(e config.Etcd, namespace, scope, name string) (*v2Leader, error) {
	cc, err := leader.ClientConfig(e)
	if err != nil {
		return nil, err
	}
	return &v2Leader{
		eps: cc.Endpoints, user: e.Username, pass: e.Password,
		key: leader.Prefix(namespace, scope) + "leader", name: name,
		http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cc.TLS}},
	}, nil
}

// v2Error is the v2 API's error body.
type v2Error struct {
	Code    int    `json:"errorCode"`
	Message string `json:"message"`
}

// do sends one request to the first endpoint that answers. v2 error
// codes 100 (key not found) and 101 (compare failed) come back as code.
func (v *v2Leader) do(ctx context.Context, method string, q url.Values) (code int, err error) {
	var errs []string
	for _, ep := range v.eps {
		u := ep + "/v2/keys" + v.key
		var body io.Reader
		if method == http.MethodPut {
			body = strings.NewReader(q.Encode())
		} else if len(q) > 0 {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return 0, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if v.user != "" {
			req.SetBasicAuth(v.user, v.pass)
		}
		resp, err := v.http.Do(req)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 300 {
			return 0, nil
		}
		var e v2Error
		if json.Unmarshal(b, &e) == nil && (e.Code == 100 || e.Code == 101) {
			return e.Code, nil
		}
		if resp.StatusCode == http.StatusNotFound {
			return 0, fmt.Errorf("%s: 404: the v2 API is off (etcd --enable-v2)", ep)
		}
		errs = append(errs, fmt.Sprintf("%s: %s: %s", ep, resp.Status, strings.TrimSpace(string(b))))
	}
	return 0, fmt.Errorf("v2 leader key %s: %s", v.key, strings.Join(errs, "; "))
}

// put writes this node's name with the given ttl.
func (v *v2Leader) put(ctx context.Context, ttl time.Duration) error {
	secs := int((ttl + time.Second - 1) / time.Second)
	_, err := v.do(ctx, http.MethodPut, url.Values{"value": {v.name}, "ttl": {strconv.Itoa(secs)}})
	return err
}

// drop deletes the copy if it still names this node.
func (v *v2Leader) drop(ctx context.Context) error {
	_, err := v.do(ctx, http.MethodDelete, url.Values{"prevValue": {v.name}})
	return err
}

// followV2Leader keeps the copy while this node leads: written at once
// when it becomes leader and again every third of the ttl, deleted
// (when it still names this node) once it stops leading. Errors are
// logged, not fatal: the copy serves other tools, not pgha.
func (d *Daemon) followV2Leader(v *v2Leader) Component {
	return func(ctx context.Context) error {
		wrote := false
		failing := false
		for {
			changed := d.loop.Changed()
			view, _ := d.loop.View()
			ttl := view.Config.TTL.D()
			if ttl <= 0 {
				ttl = d.Config().Bootstrap.DCS.TTL.D()
			}
			if ttl < 3*time.Second {
				ttl = 3 * time.Second
			}
			wctx, cancel := context.WithTimeout(ctx, ttl/3)
			var err error
			if d.loop.Info().IsLeader {
				if err = v.put(wctx, ttl); err == nil {
					if !wrote {
						d.log.Info("v2 leader key written", "key", v.key, "ttl", ttl)
					}
					wrote = true
				}
			} else if wrote {
				if err = v.drop(wctx); err == nil {
					d.log.Info("v2 leader key released", "key", v.key)
					wrote = false
				}
			}
			cancel()
			if err != nil && !failing {
				d.log.Warn("v2 leader key: "+err.Error(), "key", v.key)
			}
			failing = err != nil
			select {
			case <-ctx.Done():
				if wrote {
					dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_ = v.drop(dctx)
					cancel()
				}
				return nil
			case <-changed:
			case <-time.After(ttl / 3):
			}
		}
	}
}
