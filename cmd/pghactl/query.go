package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/cluster"
	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/restapi"
)

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "run SQL on a member (the leader by default), as patronictl query",
		ArgsUsage: "[CLUSTER]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "format", Value: "tsv", Usage: "output format: pretty, tsv, json or yaml"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "run the SQL in `FILE`"},
			&cli.BoolFlag{Name: "password", Usage: "ask for the password"},
			&cli.StringFlag{Name: "username", Aliases: []string{"U"}, Usage: "database user (default: the config file's superuser)"},
			&cli.StringFlag{Name: "role", Aliases: []string{"r"}, Usage: "a member with this role: leader, primary, replica or any"},
			&cli.StringFlag{Name: "member", Aliases: []string{"m"}, Usage: "this member"},
			&cli.StringFlag{Name: "delimiter", Value: "\t", Usage: "column delimiter of tsv"},
			&cli.StringFlag{Name: "command", Aliases: []string{"c"}, Usage: "the SQL to run"},
			&cli.StringFlag{Name: "dbname", Aliases: []string{"d"}, Usage: "database name (default postgres)"},
		}, watchFlags()...),
		Action: withCtl(runQuery),
	}
}

// runQuery is patronictl query: one connection to the chosen member, the
// SQL run once or every -w seconds, rows printed in --format. A failed
// statement prints a row of the time and ERROR, SQLSTATE, as patronictl.
func runQuery(ctx context.Context, x *ctl, c *cli.Context) error {
	sql := c.String("command")
	if f := c.String("file"); f != "" {
		if sql != "" {
			return errors.New("--file and --command are mutually exclusive options")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		sql = string(b)
	} else if sql == "" {
		return errors.New("you need to specify either --command or --file")
	}
	if c.String("role") != "" && c.String("member") != "" {
		return errors.New("--role and --member are mutually exclusive options")
	}
	auth := x.pgAuth
	if u := c.String("username"); u != "" && u != auth.Username {
		auth.Username, auth.Password = u, ""
	}
	if auth.Username == "" {
		auth.Username = "postgres"
	}
	if c.Bool("password") {
		p, err := x.ask("Password")
		if err != nil {
			return err
		}
		auth.Password = p
	}
	if auth.Password == "" {
		auth.Password = os.Getenv("PGPASSWORD")
	}
	interval, err := watchInterval(c)
	if err != nil {
		return err
	}
	v, err := x.view(ctx)
	if err != nil {
		return err
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		var cols []string
		var rows [][]string
		if conn == nil {
			conn, err = x.connectMember(ctx, v, c.String("member"), c.String("role"), auth, c.String("dbname"))
		}
		if conn == nil {
			rows = [][]string{{nowStamp(), err.Error()}}
		} else {
			cols, rows, err = queryRows(ctx, conn, sql)
			if err != nil {
				msg := err.Error()
				var pe *pgconn.PgError
				if errors.As(err, &pe) {
					msg = pe.Code
				}
				rows = [][]string{{nowStamp(), "ERROR, SQLSTATE: " + strings.ReplaceAll(msg, "\n", " ")}}
				conn.Close(context.Background())
				conn = nil
			}
		}
		t := table{columns: cols, rows: rows}
		if c.String("format") == "tsv" {
			printTSV(x, t, c.String("delimiter"))
		} else if err := t.print(x.out, c.String("format")); err != nil {
			return err
		}
		if interval <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// printTSV writes patronictl's tsv: the header (when there are columns)
// and the rows, joined by delim.
func printTSV(x *ctl, t table, delim string) {
	if len(t.columns) > 0 {
		fmt.Fprintln(x.out, strings.Join(t.columns, delim))
	}
	for _, r := range t.rows {
		fmt.Fprintln(x.out, strings.Join(r, delim))
	}
}

// connectMember opens a connection to the member named, or to a member
// with role (the leader when neither), checking a replica's or primary's
// pg_is_in_recovery() as patronictl's get_cursor does. The error says
// which connection is not available.
func (x *ctl) connectMember(ctx context.Context, v cluster.View, name, role string, auth config.Credentials, db string) (*pgx.Conn, error) {
	var m cluster.Member
	var err error
	switch {
	case name != "":
		if m, err = member(v, name); err != nil {
			return nil, fmt.Errorf("No connection to member %s is available", name)
		}
	case role == "" || role == "leader" || role == "primary" || role == "master":
		l, ok := v.LeaderMember()
		if !ok {
			if role == "" {
				return nil, errors.New("No connection is available")
			}
			return nil, fmt.Errorf("No connection to role '%s' is available", role)
		}
		m = l
	default:
		ms, err := selectMembers(v, nil, role)
		if err != nil {
			return nil, fmt.Errorf("No connection to role '%s' is available", role)
		}
		m = ms[0]
	}
	host, port := restapi.HostPort(m.ConnURL)
	if port == 0 {
		port = 5432
	}
	if db == "" {
		db = "postgres"
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d dbname=%s user=%s connect_timeout=5 application_name='pghactl'",
		host, port, quoteDSN(db), quoteDSN(auth.Username)))
	if err != nil {
		return nil, err
	}
	cfg.Password = auth.Password
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("No connection to member %s is available: %v", m.Name, err)
	}
	if role == "replica" || role == "primary" || role == "master" {
		var inRecovery bool
		if err := conn.QueryRow(cctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery != (role == "replica") {
			conn.Close(context.Background())
			return nil, fmt.Errorf("No connection to role '%s' is available", role)
		}
	}
	return conn, nil
}

func quoteDSN(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// queryRows runs sql (several statements are allowed: the last result
// is printed) and renders each value as Python's str() does, as
// patronictl prints them: None, True, 2026-11-30 02:12:40.123456+00:00.
func queryRows(ctx context.Context, conn *pgx.Conn, sql string) ([]string, [][]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rows, err := conn.Query(qctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = pyStr(v)
		}
		out = append(out, row)
	}
	return cols, out, rows.Err()
}

// pyStr renders a value as Python's str().
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case time.Time:
		return pyTimestamp(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return fmt.Sprintf("%x", x)
	}
	return fmt.Sprint(v)
}

// pyTimestamp is str(datetime): microseconds only when not zero, the
// offset as +00:00 when the time has a zone.
func pyTimestamp(t time.Time) string {
	layout := "2006-01-02 15:04:05"
	if t.Nanosecond()/1000 != 0 {
		layout += ".000000"
	}
	return t.Format(layout + "-07:00")
}

// nowStamp is patronictl's timestamp(0): local time to the second.
func nowStamp() string { return time.Now().Format("2006-01-02 15:04:05") }
