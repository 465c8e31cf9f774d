package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/pooler"
)

// serve runs the pooler with PgBouncer-equivalent settings until ctx ends.
func serve(ctx context.Context, fs *flag.FlagSet, args []string) error {
	cfg := config.DefaultPooler()
	target := fs.String("target", "127.0.0.1:5432", "Postgres host:port")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:6432", "pooler listen address")
	fs.StringVar(&cfg.AuthFile, "auth-file", "", "userlist.txt")
	fs.StringVar(&cfg.AuthType, "auth-type", "md5", "client auth type")
	fs.StringVar(&cfg.PoolMode, "pool-mode", "transaction", "pool mode")
	fs.IntVar(&cfg.DefaultPoolSize, "pool-size", 20, "default_pool_size")
	fs.IntVar(&cfg.MaxClientConn, "max-client-conn", 11000, "max_client_conn")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here until exit")
	debugAddr := fs.String("debug-addr", "", "serve net/http/pprof here (e.g. 127.0.0.1:6060)")
	memRate := fs.Int("memprofilerate", 0, "runtime.MemProfileRate for the heap profile (0: Go's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}
	if *debugAddr != "" {
		go http.ListenAndServe(*debugAddr, nil)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg.QueryWaitTimeout = config.Duration(120 * time.Second)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := pooler.New(cfg, pooler.NewStaticRouter(*target), log)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
