package pooler

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
)

// fakeBackend is a scripted Postgres over a real socket: trust login, then
// fixed answers per message type, without allocating per message.
func fakeBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFake(conn)
		}
	}()
	return ln.Addr().String()
}

func serveFake(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint32(h[:])) - 4
	if _, err := br.Discard(n); err != nil {
		return
	}
	var m msgBuilder
	m.begin('R').i32(0).end()
	m.paramStatus("server_version", "15.0").paramStatus("client_encoding", "UTF8").paramStatus("DateStyle", "ISO, MDY")
	m.paramStatus("TimeZone", "UTC").paramStatus("IntervalStyle", "postgres").paramStatus("standard_conforming_strings", "on")
	m.paramStatus("application_name", "").paramStatus("in_hot_standby", "off")
	m.begin('K').i32(1).i32(2).end().readyForQuery('I')
	bw.Write(m.b)
	bw.Flush()
	var q msgBuilder
	one := "1"
	q.rowDescription([]column{{"x", 23}}).dataRow([]*string{&one}).begin('C').str("SELECT 1").end().readyForQuery('I')
	query := q.b
	parseDone, bindDone, closeDone := []byte{'1', 0, 0, 0, 4}, []byte{'2', 0, 0, 0, 4}, []byte{'3', 0, 0, 0, 4}
	noData, ready := []byte{'n', 0, 0, 0, 4}, []byte{'Z', 0, 0, 0, 5, 'I'}
	var ex msgBuilder
	ex.dataRow([]*string{&one}).begin('C').str("SELECT 1").end()
	execute := ex.b
	for {
		hdr, err := br.Peek(5)
		if err != nil {
			return
		}
		t := hdr[0]
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if _, err := br.Discard(5 + n); err != nil {
			return
		}
		switch t {
		case 'Q':
			bw.Write(query)
		case 'P':
			bw.Write(parseDone)
		case 'B':
			bw.Write(bindDone)
		case 'C':
			bw.Write(closeDone)
		case 'D':
			bw.Write(noData)
		case 'E':
			bw.Write(execute)
		case 'S':
			bw.Write(ready)
		case 'X':
			return
		}
		if br.Buffered() == 0 {
			bw.Flush()
		}
	}
}

// benchClient logs in through the pooler with trust auth.
func benchClient(tb testing.TB, addr string) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	conn.Write(startupPacket(protocolV3, []byte("user\x00bench\x00database\x00bench\x00\x00")))
	br := bufio.NewReader(conn)
	if err := readUntilReady(br); err != nil {
		tb.Fatal(err)
	}
	return conn, br
}

func readUntilReady(br *bufio.Reader) error {
	for {
		hdr, err := br.Peek(5)
		if err != nil {
			return err
		}
		t := hdr[0]
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if _, err := br.Discard(5 + n); err != nil {
			return err
		}
		if t == 'E' {
			return io.ErrUnexpectedEOF
		}
		if t == 'Z' {
			return nil
		}
	}
}

func benchPooler(tb testing.TB, backend string) *Pooler {
	cfg := config.DefaultPooler()
	cfg.Listen = "127.0.0.1:0"
	cfg.AuthType = "trust"
	cfg.DefaultPoolSize = 1
	p, err := New(cfg, NewStaticRouter(backend), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			tb.Error("pooler did not stop")
		}
	})
	return p
}

// BenchmarkForwardSimpleQuery measures one simple-protocol transaction
// (Query -> RowDescription, DataRow, CommandComplete, ReadyForQuery)
// through the pooler in transaction mode: attach, forward, release.
func BenchmarkForwardSimpleQuery(b *testing.B) {
	p := benchPooler(b, fakeBackend(b))
	conn, br := benchClient(b, p.Addr())
	q := msg('Q', []byte("SELECT 1\x00"))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(q); err != nil {
			b.Fatal(err)
		}
		if err := readUntilReady(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardPrepared measures Bind/Execute/Sync of a named prepared
// statement (pgbench -M prepared's shape), renamed by the pooler.
func BenchmarkForwardPrepared(b *testing.B) {
	p := benchPooler(b, fakeBackend(b))
	conn, br := benchClient(b, p.Addr())
	parse := append(msg('P', []byte("P0_1\x00SELECT 1\x00\x00\x00")), msg('S', nil)...)
	conn.Write(parse)
	if err := readUntilReady(br); err != nil {
		b.Fatal(err)
	}
	var batch []byte
	batch = append(batch, msg('B', []byte("\x00P0_1\x00\x00\x00\x00\x00\x00\x00"))...)
	batch = append(batch, msg('E', []byte("\x00\x00\x00\x00\x00"))...)
	batch = append(batch, msg('S', nil)...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(batch); err != nil {
			b.Fatal(err)
		}
		if err := readUntilReady(br); err != nil {
			b.Fatal(err)
		}
	}
}
