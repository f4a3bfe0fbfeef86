// Package adminapi is the operator's interface to a running btmm server:
// adding, revoking, rotating and listing the users of a members zone,
// with no reload. It is JSON over HTTP on a Unix socket that the btmm
// plugin opens (its admin property); the socket's file permissions are the
// authentication, so only the server's own account (and root) may use it,
// and nothing of it is reachable from the network or with a user's key.
//
// This package holds what the server and its clients (btmm-admin) share:
// the messages and a Client.
//
//	GET    /v1/users                 every user, one JSON User per line
//	GET    /v1/users/{name}          one user
//	POST   /v1/users                 add (AddRequest); 409 if there is one
//	POST   /v1/users/{name}/rotate   a new key (RotateRequest)
//	DELETE /v1/users/{name}          revoke (?records=keep to leave them)
//	POST   /v1/import                a BIND key file (the body): each key a
//	                                 new user, those there already skipped
//
// A name is a user's domain (alice.members.example.com.) or its first
// label alone (alice). Errors are an HTTP status and an Error body.
package adminapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// User is a user as the API shows it.
type User struct {
	// Name is the user's domain, which is also its key's name.
	Name string `json:"name"`
	// Algorithm is the key's HMAC, in BIND's spelling (hmac-sha256).
	Algorithm string `json:"algorithm"`
	// Secret is the key, in base64; only in the replies of add and
	// rotate, for the operator to hand to the user.
	Secret string `json:"secret,omitempty"`
	// PreviousUntil is when the key that the current one replaced stops
	// being accepted; absent when no rotation is in its overlap.
	PreviousUntil *time.Time `json:"previous_until,omitempty"`
	// Source is where the user is kept: "store" (added here, live) or
	// "keyfile" (the Corefile's key file, changed by editing it and a
	// reload).
	Source string `json:"source"`
}

// Where a user is kept.
const (
	SourceStore   = "store"
	SourceKeyFile = "keyfile"
)

// AddRequest adds a user.
type AddRequest struct {
	Name string `json:"name"`
	// Algorithm defaults to hmac-sha256.
	Algorithm string `json:"algorithm,omitempty"`
	// Secret, base64, imports an existing key; empty makes a random one
	// of the algorithm's hash size.
	Secret string `json:"secret,omitempty"`
}

// RotateRequest gives a user a new key.
type RotateRequest struct {
	// Overlap is how long the replaced key is still accepted, so that
	// the user's hosts can take up the new one; 0 ends it at once.
	Overlap Duration `json:"overlap"`
	// Algorithm and Secret as in AddRequest; the algorithm defaults to
	// the current key's.
	Algorithm string `json:"algorithm,omitempty"`
	Secret    string `json:"secret,omitempty"`
}

// RevokeReply says what a revocation did.
type RevokeReply struct {
	Name string `json:"name"`
	// RecordNames is how many names held records of the user and were
	// emptied; 0 when they were left to expire.
	RecordNames int `json:"record_names"`
	// LeftToExpire says the records were kept, to end with their leases.
	LeftToExpire bool `json:"left_to_expire,omitempty"`
}

// ImportReply says what an import did.
type ImportReply struct {
	Added int `json:"added"`
	// Existed counts the keys skipped because their user was there
	// already (in the store or the key file); Skipped names the first
	// hundred of them.
	Existed int      `json:"existed"`
	Skipped []string `json:"skipped,omitempty"`
}

// Error is the body of a reply that failed.
type Error struct {
	Error string `json:"error"`
}

// Duration is a time.Duration written as Go writes one ("24h0m0s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// StatusError is a reply that failed, as the server explained it.
type StatusError struct {
	Status int
	Msg    string
}

func (e *StatusError) Error() string { return e.Msg }

// IsNotFound reports whether err says there is no such user.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// Client talks to the admin socket of one server.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the admin socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{socket: path, http: &http.Client{Transport: tr}}
}

// Add adds a user and returns it with its secret.
func (c *Client) Add(ctx context.Context, req AddRequest) (User, error) {
	var u User
	return u, c.do(ctx, http.MethodPost, "/v1/users", req, &u)
}

// User returns one user, without its secret.
func (c *Client) User(ctx context.Context, name string) (User, error) {
	var u User
	return u, c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(name), nil, &u)
}

// Rotate gives a user a new key and returns it with its secret.
func (c *Client) Rotate(ctx context.Context, name string, req RotateRequest) (User, error) {
	var u User
	return u, c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/rotate", req, &u)
}

// Revoke removes a user: its key stops working at once, its LLQs end, and
// its records are deleted, or left to expire with keepRecords.
func (c *Client) Revoke(ctx context.Context, name string, keepRecords bool) (RevokeReply, error) {
	path := "/v1/users/" + url.PathEscape(name)
	if keepRecords {
		path += "?records=keep"
	}
	var r RevokeReply
	return r, c.do(ctx, http.MethodDelete, path, nil, &r)
}

// Import adds a user for each key of the BIND key file read from r.
func (c *Client) Import(ctx context.Context, r io.Reader) (ImportReply, error) {
	var out ImportReply
	resp, err := c.request(ctx, http.MethodPost, "/v1/import", r)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// List calls fn with every user, as the server streams them.
func (c *Client) List(ctx context.Context, fn func(User) error) error {
	resp, err := c.request(ctx, http.MethodGet, "/v1/users", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var u User
		if err := json.Unmarshal(sc.Bytes(), &u); err != nil {
			return fmt.Errorf("admin socket %s: %w", c.socket, err)
		}
		if err := fn(u); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// request sends one request and returns a reply that succeeded.
func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if r, ok := body.(io.Reader); ok {
		rd = r
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://btmm"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, &StatusError{Status: resp.StatusCode, Msg: e.Error}
	}
	return resp, nil
}
