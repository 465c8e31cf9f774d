package pooler

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Protocol codes carried in the startup packet's version field.
const (
	protocolV3        = 196608
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	// maxStartupLen is Postgres's MAX_STARTUP_PACKET_LENGTH.
	maxStartupLen = 10000
)

// ErrProtocol marks a client or server that broke the wire protocol.
var ErrProtocol = errors.New("pooler: protocol violation")

// SQLSTATE codes the pooler reports itself.
const (
	codeProtocolViolation = "08P01"
	codeInvalidPassword   = "28P01"
	codeInvalidAuthSpec   = "28000"
	codeTooManyConns      = "53300"
	codeConnFailure       = "08006"
	codeAdminShutdown     = "57P01"
	codeFeatureNotSupp    = "0A000"
	codeInvalidCatalog    = "3D000"
	codeConfigLimit       = "53400"
)

// bodyLen checks the length field of a 5-byte message header and returns
// the body length. A negative, short or oversized length is ErrProtocol
// before anything is allocated.
func bodyLen(hdr []byte, max int) (int, error) {
	n := int64(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return 0, fmt.Errorf("%w: message %q has length %d (below 4)", ErrProtocol, hdr[0], n)
	}
	if n-4 > int64(max) {
		return 0, fmt.Errorf("%w: message %q of %d bytes exceeds max_packet_size %d", ErrProtocol, hdr[0], n-4, max)
	}
	return int(n - 4), nil
}

// readStartupPacket reads one length-prefixed startup-phase packet (no type
// byte): SSLRequest, GSSENCRequest, CancelRequest or StartupMessage. It
// returns the code and the rest of the body.
// A length outside 8..limit is refused before the body is allocated.
func readStartupPacket(r io.Reader, limit int) (code uint32, body []byte, err error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return 0, nil, err
	}
	n := int64(int32(binary.BigEndian.Uint32(h[:4])))
	if n < 8 || n > int64(limit) {
		return 0, nil, fmt.Errorf("%w: startup packet length %d (want 8..%d)", ErrProtocol, n, limit)
	}
	if _, err := io.ReadFull(r, h[4:8]); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated startup packet: %v", ErrProtocol, err)
	}
	body = make([]byte, n-8)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated startup packet: %v", ErrProtocol, err)
	}
	return binary.BigEndian.Uint32(h[4:8]), body, nil
}

// parseStartupParams reads the name/value pairs of a StartupMessage.
func parseStartupParams(b []byte) (map[string]string, error) {
	m := make(map[string]string)
	for {
		k, rest, ok := cstring(b)
		if !ok {
			return nil, fmt.Errorf("%w: startup parameters not terminated", ErrProtocol)
		}
		if k == "" {
			if len(rest) != 0 {
				return nil, fmt.Errorf("%w: %d bytes after startup parameters", ErrProtocol, len(rest))
			}
			return m, nil
		}
		v, rest2, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: startup parameter %q has no value", ErrProtocol, k)
		}
		m[k] = v
		b = rest2
	}
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// cbytes is cstring without the copy.
func cbytes(b []byte) ([]byte, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// msgBuilder builds backend or frontend messages for the cold paths
// (startup, errors, admin console).
type msgBuilder struct {
	b     []byte
	start int
}

func (m *msgBuilder) begin(t byte) *msgBuilder {
	m.start = len(m.b)
	m.b = append(m.b, t, 0, 0, 0, 0)
	return m
}

// beginUntyped starts a startup-phase packet (no type byte).
func (m *msgBuilder) beginUntyped() *msgBuilder {
	m.start = len(m.b) - 1
	m.b = append(m.b, 0, 0, 0, 0)
	return m
}

func (m *msgBuilder) str(s string) *msgBuilder { m.b = append(append(m.b, s...), 0); return m }
func (m *msgBuilder) raw(p []byte) *msgBuilder { m.b = append(m.b, p...); return m }
func (m *msgBuilder) byte1(c byte) *msgBuilder { m.b = append(m.b, c); return m }
func (m *msgBuilder) i32(v int32) *msgBuilder {
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(v))
	return m
}
func (m *msgBuilder) i16(v int16) *msgBuilder {
	m.b = binary.BigEndian.AppendUint16(m.b, uint16(v))
	return m
}
func (m *msgBuilder) end() *msgBuilder {
	binary.BigEndian.PutUint32(m.b[m.start+1:], uint32(len(m.b)-m.start-1))
	return m
}

// errorMsg appends an ErrorResponse.
func (m *msgBuilder) errorMsg(severity, code, text string) *msgBuilder {
	return m.errorFields(severity, code, text, "")
}

// errorFields appends an ErrorResponse with an optional DETAIL.
func (m *msgBuilder) errorFields(severity, code, text, detail string) *msgBuilder {
	m.begin('E').byte1('S').str(severity).byte1('V').str(severity).
		byte1('C').str(code).byte1('M').str(text)
	if detail != "" {
		m.byte1('D').str(detail)
	}
	return m.byte1(0).end()
}

func (m *msgBuilder) readyForQuery(status byte) *msgBuilder {
	return m.begin('Z').byte1(status).end()
}

func (m *msgBuilder) paramStatus(k, v string) *msgBuilder {
	return m.begin('S').str(k).str(v).end()
}

// column describes one text column of a local result set.
type column struct {
	name string
	oid  int32 // 25 text, 20 int8, 23 int4, 701 float8
}

// rowDescription appends a RowDescription for text-format columns.
func (m *msgBuilder) rowDescription(cols []column) *msgBuilder {
	m.begin('T').i16(int16(len(cols)))
	for _, c := range cols {
		size := int16(-1)
		switch c.oid {
		case 20:
			size = 8
		case 23:
			size = 4
		}
		m.str(c.name).i32(0).i16(0).i32(c.oid).i16(size).i32(-1).i16(0)
	}
	return m.end()
}

// dataRow appends a DataRow; nil values are SQL NULL.
func (m *msgBuilder) dataRow(vals []*string) *msgBuilder {
	m.begin('D').i16(int16(len(vals)))
	for _, v := range vals {
		if v == nil {
			m.i32(-1)
			continue
		}
		m.i32(int32(len(*v))).raw([]byte(*v))
	}
	return m.end()
}

// serverError is an ErrorResponse or FATAL from Postgres or the pooler.
type serverError struct {
	Severity, Code, Message string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}

// parseErrorFields reads an ErrorResponse/NoticeResponse body.
func parseErrorFields(b []byte) *serverError {
	e := &serverError{}
	for len(b) > 0 && b[0] != 0 {
		f := b[0]
		v, rest, ok := cstring(b[1:])
		if !ok {
			break
		}
		switch f {
		case 'S':
			if e.Severity == "" {
				e.Severity = v
			}
		case 'V':
			e.Severity = v
		case 'C':
			e.Code = v
		case 'M':
			e.Message = v
		}
		b = rest
	}
	return e
}

// Buffer pools. Readers and writers are taken while a message is in flight
// and returned when the client goes idle.
const ioBufSize = 8192

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ioBufSize) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// sinkError is a failure to write to copyBody's destination (as opposed
// to reading its source): the other side of the copy went away.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// copyBody forwards n bytes from src to dst through src's buffer: no
// allocation, large bodies stream in buffer-sized pieces. A failed write
// to dst is a *sinkError.
func copyBody(dst *bufio.Writer, src *bufio.Reader, n int) error {
	for n > 0 {
		k := src.Buffered()
		if k == 0 {
			if _, err := src.Peek(1); err != nil {
				return err
			}
			k = src.Buffered()
		}
		if k > n {
			k = n
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return &sinkError{err}
		}
		src.Discard(k)
		n -= k
	}
	return nil
}

// readBody consumes the next n bytes of src. When they fit src's buffer the
// result aliases it (valid until the next read of src); bigger bodies,
// already bounded by max_packet_size, are read into a fresh slice.
func readBody(src *bufio.Reader, n int) ([]byte, error) {
	if n <= src.Size() {
		b, err := src.Peek(n)
		if err != nil {
			return nil, err
		}
		src.Discard(n)
		return b, nil
	}
	b := make([]byte, n)
	_, err := io.ReadFull(src, b)
	return b, err
}

// writeHeader writes a message header without allocating.
func writeHeader(w *bufio.Writer, t byte, bodyLen int) {
	l := uint32(bodyLen + 4)
	writeBytes(w, t, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
}

// writeBytes writes a few bytes through w's own buffer (no escaping slice).
func writeBytes(w *bufio.Writer, bs ...byte) {
	if w.Available() >= len(bs) {
		w.Write(append(w.AvailableBuffer(), bs...))
		return
	}
	for _, b := range bs {
		w.WriteByte(b)
	}
}
