package handshake

import (
	"net/netip"
	"testing"
)

// FuzzRespond feeds arbitrary initiations to a responder; mac1 is fixed up
// half of the time so the fuzzer reaches the Noise and payload parsing.
func FuzzRespond(f *testing.F) {
	p := newPair(f)
	msg, _, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	f.Add(msg, false)
	f.Add(msg[:10], true)
	f.Add([]byte{}, false)
	src := netip.MustParseAddrPort("192.0.2.1:4500")
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix && len(data) >= 2*macLen {
			data = remac(data, p.cr.Static.Public)
		}
		reply, res, err := p.resp.Respond(data, ulaR, 0x2000)
		if err != nil && (reply != nil || res != (Result{})) {
			t.Fatal("output on error")
		}
		_, _, _ = p.resp.RespondFrom(data, src, true, ulaR, 0x2000)
	})
}

// FuzzFinish feeds arbitrary responses and cookie replies to an initiation.
func FuzzFinish(f *testing.F) {
	p := newPair(f)
	msg, st, _ := Initiate(p.ci, p.cr.Static.Public, ulaI, 0x1000)
	reply, _, _ := p.resp.Respond(msg, ulaR, 0x2000)
	f.Add(reply)
	f.Add(reply[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Pin the receiver index so mutations reach the Noise layer.
		if len(data) >= 9 && data[0] == TypeResponse {
			copy(data[5:9], msg[1:5])
		}
		res, err := st.Finish(data)
		if err != nil && res != (Result{}) {
			t.Fatal("keys on error")
		}
		if err == nil {
			st.done = false // keep the initiation usable for later inputs
		}
		_ = st.ConsumeCookie(data)
	})
}
