package portmap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeIGD is a UPnP Internet Gateway Device on a 127.x.y.z address of its
// own: an HTTP server with a device description holding one
// WANIPConnection service (version 1 or 2) and its SOAP control URL. It
// keeps port mappings as a router does (UPnP IGD WANIPConnection:2
// §2.5.16): AddPortMapping of a port mapped to another client is 718,
// of a port mapped to the same client updates it; a lease other than 0
// on a router that takes only permanent ones is 725; a lookup or
// deletion of a port not mapped is 714.
type fakeIGD struct {
	t       *testing.T
	version int
	addr    netip.Addr
	srv     *http.Server
	ln      net.Listener

	mu        sync.Mutex // guards following
	external  netip.Addr
	mappings  map[uint16]fakeIGDMapping // by external port
	permanent bool                      // only lease 0 (725 otherwise)
	hang      chan struct{}             // when not nil, actions wait for it to close
	actions   []string                  // in order
}

type fakeIGDMapping struct {
	internal uint16
	client   string
	lease    uint32
}

func newFakeIGD(t *testing.T, version int) *fakeIGD {
	t.Helper()
	return newFakeIGDAt(t, version, netip.Addr{})
}

// newFakeIGDAt starts a fake router at addr (a new port), or at the next
// nextLoopback address if addr is invalid.
func newFakeIGDAt(t *testing.T, version int, addr netip.Addr) *fakeIGD {
	t.Helper()
	g := &fakeIGD{t: t, version: version, external: testExternal, mappings: map[uint16]fakeIGDMapping{}}
	var err error
	for range 20 {
		g.addr = addr
		if !addr.IsValid() {
			g.addr = nextLoopback()
		}
		if g.ln, err = net.Listen("tcp4", netip.AddrPortFrom(g.addr, 0).String()); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/rootDesc.xml", g.desc)
	mux.HandleFunc("/ctl", g.control)
	g.srv = &http.Server{Handler: mux}
	go g.srv.Serve(g.ln)
	t.Cleanup(func() { g.srv.Close() })
	return g
}

// url is the device description's address.
func (g *fakeIGD) url() *url.URL {
	u, _ := url.Parse("http://" + g.ln.Addr().String() + "/rootDesc.xml")
	return u
}

func (g *fakeIGD) set(fn func(g *fakeIGD)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn(g)
}

func (g *fakeIGD) reboot() { g.set(func(g *fakeIGD) { clear(g.mappings) }) }

func (g *fakeIGD) mapping(port uint16) (fakeIGDMapping, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.mappings[port]
	return m, ok
}

func (g *fakeIGD) log() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.actions...)
}

func (g *fakeIGD) serviceType() string {
	return "urn:schemas-upnp-org:service:WANIPConnection:" + strconv.Itoa(g.version)
}

func (g *fakeIGD) desc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:%[1]d</deviceType>
<friendlyName>fake router</friendlyName>
<UDN>uuid:00000000-0000-0000-0000-000000000001</UDN>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:%[1]d</deviceType>
<UDN>uuid:00000000-0000-0000-0000-000000000002</UDN>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:%[1]d</deviceType>
<UDN>uuid:00000000-0000-0000-0000-000000000003</UDN>
<serviceList><service>
<serviceType>%[2]s</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<SCPDURL>/WANIPCn.xml</SCPDURL>
<controlURL>/ctl</controlURL>
<eventSubURL>/evt</eventSubURL>
</service></serviceList>
</device></deviceList>
</device></deviceList>
</device>
</root>
`, g.version, g.serviceType())
}

// control answers one SOAP action.
func (g *fakeIGD) control(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_, action, _ := strings.Cut(strings.Trim(r.Header.Get("SOAPACTION"), `"`), "#")
	args := soapArgs(body)
	g.mu.Lock()
	hang := g.hang
	g.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actions = append(g.actions, action)
	port := func(name string) uint16 {
		n, _ := strconv.ParseUint(args[name], 10, 16)
		return uint16(n)
	}
	fail := func(code int, desc string) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`, code, desc)
	}
	ok := func(out ...string) {
		w.Header().Set("Content-Type", "text/xml")
		var b bytes.Buffer
		for i := 0; i+1 < len(out); i += 2 {
			fmt.Fprintf(&b, "<%s>%s</%s>", out[i], out[i+1], out[i])
		}
		fmt.Fprintf(w, `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:%sResponse xmlns:u="%s">%s</u:%sResponse></s:Body></s:Envelope>`,
			action, g.serviceType(), b.String(), action)
	}
	add := func(ext uint16) bool {
		lease, _ := strconv.ParseUint(args["NewLeaseDuration"], 10, 32)
		if g.permanent && lease != 0 {
			fail(upnpOnlyPermanentLeases, "OnlyPermanentLeasesSupported")
			return false
		}
		if m, ok := g.mappings[ext]; ok && m.client != args["NewInternalClient"] {
			fail(upnpConflict, "ConflictInMappingEntry")
			return false
		}
		g.mappings[ext] = fakeIGDMapping{internal: port("NewInternalPort"), client: args["NewInternalClient"], lease: uint32(lease)}
		return true
	}
	switch action {
	case "GetExternalIPAddress":
		ok("NewExternalIPAddress", g.external.String())
	case "AddPortMapping":
		if add(port("NewExternalPort")) {
			ok()
		}
	case "AddAnyPortMapping":
		if g.version < 2 {
			fail(401, "Invalid Action")
			return
		}
		ext := port("NewExternalPort")
		for m, ok := g.mappings[ext]; ok && m.client != args["NewInternalClient"]; m, ok = g.mappings[ext] {
			ext++
		}
		if add(ext) {
			ok("NewReservedPort", strconv.Itoa(int(ext)))
		}
	case "GetSpecificPortMappingEntry":
		m, found := g.mappings[port("NewExternalPort")]
		if !found {
			fail(upnpNoSuchEntry, "NoSuchEntryInArray")
			return
		}
		ok("NewInternalPort", strconv.Itoa(int(m.internal)), "NewInternalClient", m.client, "NewEnabled", "1",
			"NewPortMappingDescription", upnpDescription, "NewLeaseDuration", strconv.Itoa(int(m.lease)))
	case "DeletePortMapping":
		if _, found := g.mappings[port("NewExternalPort")]; !found {
			fail(upnpNoSuchEntry, "NoSuchEntryInArray")
			return
		}
		delete(g.mappings, port("NewExternalPort"))
		ok()
	default:
		fail(401, "Invalid Action")
	}
}

// soapArgs returns the arguments of the action in a SOAP request body:
// the text of each child element of the Body's one child.
func soapArgs(body []byte) map[string]string {
	args := map[string]string{}
	d := xml.NewDecoder(bytes.NewReader(body))
	depth := 0
	var name string
	for {
		tok, err := d.Token()
		if err != nil {
			return args
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			name = tok.Name.Local
		case xml.CharData:
			if depth == 4 { // Envelope, Body, action, argument
				args[name] += string(tok)
			}
		case xml.EndElement:
			depth--
		}
	}
}

// notify sends an SSDP NOTIFY ssdp:alive for the router's description,
// with boot as BOOTID.UPNP.ORG, from the router's address (or, with
// stray, from another) to to.
func (g *fakeIGD) notify(to netip.AddrPort, boot int, stray bool) {
	g.t.Helper()
	from := g.addr
	if stray {
		from = nextLoopback()
	}
	c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(to))
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=120\r\n"+
		"LOCATION: %s\r\nNT: %s\r\nNTS: ssdp:alive\r\nSERVER: fake UPnP/1.1 fake/1\r\n"+
		"USN: uuid:00000000-0000-0000-0000-000000000003::%s\r\nBOOTID.UPNP.ORG: %d\r\nCONFIGID.UPNP.ORG: 1\r\n\r\n",
		g.url(), g.serviceType(), g.serviceType(), boot)
}
