package convert

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Patroni's environment configuration (patroni/config.py,
// _build_environment_configuration): which PATRONI_<SECTION>_<PARAM>
// variables set which keys.
var envSections = map[string][]string{
	"restapi": {"listen", "connect_address", "certfile", "keyfile", "keyfile_password", "cafile", "ciphers",
		"verify_client", "http_extra_headers", "https_extra_headers", "allowlist", "allowlist_include_members",
		"request_queue_size", "server_tokens"},
	"ctl":        {"insecure", "cacert", "certfile", "keyfile", "keyfile_password"},
	"postgresql": {"listen", "connect_address", "proxy_address", "config_dir", "data_dir", "pgpass", "bin_dir"},
	"log": {"type", "level", "traceback_level", "format", "dateformat", "static_fields", "max_queue_size", "dir",
		"mode", "file_size", "file_num", "loggers", "deduplicate_heartbeat_logs"},
}

// envDCSSuffixes are the PATRONI_<DCS>_<SUFFIX> keys Patroni reads for any
// DCS section (etcd, etcd3, kubernetes, consul, zookeeper, ...).
var envDCSSuffixes = map[string]bool{"HOST": true, "HOSTS": true, "PORT": true, "USE_PROXIES": true, "PROTOCOL": true,
	"SRV": true, "SRV_SUFFIX": true, "URL": true, "PROXY": true, "CACERT": true, "CERT": true, "KEY": true,
	"VERIFY": true, "TOKEN": true, "NAMESPACE": true, "USE_ENDPOINTS": true, "POD_IP": true, "PORTS": true,
	"LABELS": true, "BYPASS_API_SERVICE": true, "KEY_PASSWORD": true, "USE_SSL": true, "CONTEXT": true,
	"SCOPE_LABEL": true, "ROLE_LABEL": true, "CHECKS": true, "DC": true, "CONSISTENCY": true}

var authParams = []string{"username", "password", "sslmode", "sslcert", "sslkey", "sslpassword", "sslrootcert",
	"sslcrl", "sslcrldir", "gssencmode", "channel_binding"}

// applyEnv merges PATRONI_* variables into the parsed file as Patroni
// does (the environment wins). Variables Patroni would read but pgha has
// nothing for are handled by the sections' own notes; the rest are noted
// here.
func applyEnv(c *conv, root map[string]any, env []string) {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "PATRONI_") && v != "" {
			vars[strings.TrimPrefix(k, "PATRONI_")] = v
		}
	}
	if len(vars) == 0 {
		return
	}
	sub := func(m map[string]any, k string) map[string]any {
		if s, ok := asMap(m[k]); ok {
			return s
		}
		s := map[string]any{}
		m[k] = s
		return s
	}
	take := func(name string) (string, bool) {
		v, ok := vars[name]
		delete(vars, name)
		return v, ok
	}
	for _, k := range []string{"name", "namespace", "scope"} {
		if v, ok := take(strings.ToUpper(k)); ok {
			root[k] = v
		}
	}
	for old, name := range map[string]string{"LOGLEVEL": "LOG_LEVEL", "LOGFORMAT": "LOG_FORMAT", "LOG_DATEFMT": "LOG_DATEFORMAT"} {
		if v, ok := take(old); ok {
			if _, set := vars[name]; !set {
				vars[name] = v
			}
		}
	}
	for section, params := range envSections {
		for _, p := range params {
			if v, ok := take(strings.ToUpper(section + "_" + p)); ok {
				sub(root, section)[p] = v
			}
		}
	}
	for _, section := range []string{"restapi", "ctl"} {
		for _, p := range []string{"username", "password"} {
			if v, ok := take(strings.ToUpper(section + "_" + p)); ok {
				sub(sub(root, section), "authentication")[p] = v
			}
		}
	}
	for _, role := range []string{"replication", "superuser", "rewind"} {
		for _, p := range authParams {
			if v, ok := take(strings.ToUpper(role + "_" + p)); ok {
				sub(sub(sub(root, "postgresql"), "authentication"), role)[p] = v
			}
		}
	}
	for _, dcs := range []string{"etcd", "etcd3"} {
		for _, p := range []string{"username", "password"} {
			if v, ok := take(strings.ToUpper(dcs + "_" + p)); ok {
				sub(root, dcs)[p] = v
			}
		}
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := vars[k]
		name, suffix, _ := strings.Cut(k, "_")
		switch {
		case name != "" && envDCSSuffixes[suffix]:
			s := sub(root, strings.ToLower(name))
			switch suffix {
			case "HOSTS", "PORTS", "CHECKS":
				s[strings.ToLower(suffix)] = envList(v)
			default:
				s[strings.ToLower(suffix)] = v
			}
		case suffix == "PASSWORD" || suffix == "OPTIONS":
			c.note("PATRONI_"+k, "bootstrap users are not created by pgha: create the role with SQL once the cluster runs")
		default:
			c.note("PATRONI_"+k, "not a Patroni setting pgha knows: left out")
		}
	}
}

// envList parses a list-valued variable as Patroni's _parse_list: a YAML
// list, with brackets added when missing ("'a:2379','b:2379'").
func envList(v string) []any {
	s := strings.TrimSpace(v)
	if !strings.HasPrefix(s, "-") && !strings.Contains(s, "[") {
		s = "[" + s + "]"
	}
	var out []any
	if err := yaml.Unmarshal([]byte(s), &out); err != nil {
		return []any{v}
	}
	return out
}

// ReadEnvFile reads KEY=VALUE lines as Docker's env_file does: blank
// lines and # comments are skipped, values are taken literally.
func ReadEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("convert: env file: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || !strings.Contains(line, "=") {
			continue
		}
		out = append(out, line)
	}
	return out, nil
}
