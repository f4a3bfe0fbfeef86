package adminapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// serve answers the client's requests on a Unix socket with h.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewClient(path)
}

func TestClient(t *testing.T) {
	var got RotateRequest
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/users":
			enc := json.NewEncoder(w)
			enc.Encode(User{Name: "a.example.", Algorithm: "hmac-sha256", Source: SourceStore})
			enc.Encode(User{Name: "b.example.", Algorithm: "hmac-md5", Source: SourceKeyFile})
		case r.Method == http.MethodPost && r.URL.Path == "/v1/users/a.example./rotate":
			json.NewDecoder(r.Body).Decode(&got)
			json.NewEncoder(w).Encode(User{Name: "a.example.", Secret: "bmV3"})
		default:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(Error{Error: "no user " + r.URL.Path})
		}
	})
	ctx := context.Background()
	var names []string
	if err := c.List(ctx, func(u User) error { names = append(names, u.Name+" "+u.Source); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != "a.example. store" || names[1] != "b.example. keyfile" {
		t.Errorf("List gave %v", names)
	}
	u, err := c.Rotate(ctx, "a.example.", RotateRequest{Overlap: Duration(90 * time.Minute)})
	if err != nil || u.Secret != "bmV3" {
		t.Fatalf("Rotate: %+v, %v", u, err)
	}
	if time.Duration(got.Overlap) != 90*time.Minute {
		t.Errorf("the server read an overlap of %v", time.Duration(got.Overlap))
	}
	_, err = c.Revoke(ctx, "nobody", false)
	if !IsNotFound(err) || err.Error() != "no user /v1/users/nobody" {
		t.Errorf("Revoke of a user the server does not know: %v", err)
	}
}

func TestClientNoServer(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "missing.sock"))
	if _, err := c.User(context.Background(), "a"); err == nil {
		t.Error("a client of a socket that does not exist reported no error")
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(RotateRequest{Overlap: Duration(36 * time.Hour)})
	if err != nil || string(b) != `{"overlap":"36h0m0s"}` {
		t.Fatalf("%s, %v", b, err)
	}
	var r RotateRequest
	if err := json.Unmarshal([]byte(`{"overlap":"soon"}`), &r); err == nil {
		t.Error("an overlap that is no duration was read")
	}
}
