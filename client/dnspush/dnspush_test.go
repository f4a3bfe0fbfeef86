package dnspush

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/dso"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

var key = keyfile.Key{Name: "alice.example.", Algorithm: dns.HmacSHA256, Secret: "F42STmDnGmFG1jyejcOLBJFIHgcGsAPxrqiDTI9YerQ="}

// fakeServer answers one session the way a DNS Push server does: the
// Keepalive with its values, the signed SOA query signed, a SUBSCRIBE for
// refused.example. with REFUSED and a retry delay, any other with NOERROR
// and a PUSH of one record; then it asks the client to go away.
func fakeServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		send := func(b []byte) { c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)) }
		sendDSO := func(m *dso.Message) { b, _ := m.Pack(); send(b) }
		var hdr [2]byte
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			if !dso.IsDSO(b) {
				r := new(dns.Msg)
				r.Unpack(b)
				res := tsigauth.CheckRaw(b, r, func(string) []keyfile.Key { return []keyfile.Key{key} }, time.Now())
				sig := r.IsTsig()
				r.Extra = nil
				out, _ := tsigauth.PackReply(new(dns.Msg).SetReply(r), sig, res, time.Now())
				send(out)
				continue
			}
			m, _ := dso.Parse(b)
			prim, _ := m.Primary()
			switch prim.Type {
			case dso.TypeKeepalive:
				sendDSO(&dso.Message{ID: m.ID, Response: true, TLVs: []dso.TLV{dso.Keepalive{Inactivity: 30000, Interval: 60000}.TLV()}})
			case dso.TypeSubscribe:
				q, _ := dso.ParseSubscribe(prim.Data)
				if q.Name == "refused.example." {
					sendDSO(&dso.Message{ID: m.ID, Response: true, Rcode: dns.RcodeRefused, TLVs: []dso.TLV{dso.RetryDelay(300000)}})
					continue
				}
				sendDSO(&dso.Message{ID: m.ID, Response: true})
				rr, _ := dns.NewRR(q.Name + " 60 IN AAAA fd00::1")
				add, _ := dso.AddChange(rr)
				rm, _ := dso.RemoveChange(rr)
				push, _ := dso.Push([]dso.Change{add, rm})
				sendDSO(&dso.Message{TLVs: []dso.TLV{push}})
			case dso.TypeUnsubscribe:
				sendDSO(&dso.Message{TLVs: []dso.TLV{dso.RetryDelay(1000)}})
			}
		}
	}()
	return ln.Addr().String()
}

func TestSession(t *testing.T) {
	ctx := context.Background()
	s, err := Dial(ctx, Config{Server: fakeServer(t), Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Subscribe(ctx, "refused.example", dns.TypeAAAA)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Rcode != dns.RcodeRefused || refused.RetryDelay != 5*time.Minute {
		t.Errorf("a refused SUBSCRIBE: %v", err)
	}
	id, err := s.Subscribe(ctx, "h.alice.example.", dns.TypeAAAA)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-s.Pushes():
		if len(p.Added) != 1 || len(p.Removed) != 1 || p.Added[0].Header().Ttl != 60 {
			t.Errorf("PUSH: %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no PUSH")
	}
	s.Unsubscribe(id)
	select {
	case <-s.Done():
		if s.Err() == nil {
			t.Error("a session the server ended with a Retry Delay has no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server's Retry Delay did not end the session")
	}
}
