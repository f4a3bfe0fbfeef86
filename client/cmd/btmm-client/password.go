package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/openbtmm/btmm/client/secret"
)

// Where keygen --password reads from. Tests replace these.
var (
	// stdin is read for the password when it is not a terminal.
	stdin io.Reader = os.Stdin
	// terminal reports whether standard input is a terminal, and its
	// file descriptor.
	terminal = func() (int, bool) {
		fd := int(os.Stdin.Fd())
		return fd, term.IsTerminal(fd)
	}
	// readNoEcho reads a line from the terminal fd without echoing it.
	readNoEcho = term.ReadPassword
)

// passwordMax bounds a password read from a file or a pipe, so that pointing
// --password-file at a large file fails instead of hashing it.
const passwordMax = 1024

// shortPassword is the length under which keygen warns: a derived key is
// only as strong as its password (see package secret).
const shortPassword = 12

// readPassword gets the password for the key named name: from the first
// line of file if file is not empty, else from the terminal without echo,
// asked twice (a mistyped password would make a key the server does not
// know), else from the first line of standard input. The line ending is not
// part of the password; other white space is.
func readPassword(file, name string, stderr io.Writer) ([]byte, error) {
	var pw []byte
	var err error
	switch fd, isTerm := terminal(); {
	case file != "":
		f, ferr := os.Open(file)
		if ferr != nil {
			return nil, ferr
		}
		defer f.Close()
		if pw, err = firstLine(f); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	case isTerm:
		fmt.Fprintf(stderr, "Password for %s: ", name)
		pw, err = readNoEcho(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		fmt.Fprintf(stderr, "Again: ")
		again, err := readNoEcho(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("reading the password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the passwords differ")
		}
	default:
		if pw, err = firstLine(stdin); err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	if len([]rune(string(pw))) < shortPassword {
		fmt.Fprintf(stderr, "btmm-client: warning: a password shorter than %d characters makes a key that can be guessed\n", shortPassword)
	}
	return pw, nil
}

// firstLine reads up to the first "\n" (or the end) and drops the "\n" or
// "\r\n".
func firstLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(io.LimitReader(r, passwordMax+1)).ReadSlice('\n')
	switch {
	case err == nil:
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	case errors.Is(err, io.EOF) && len(line) <= passwordMax:
		line = bytes.TrimSuffix(line, []byte("\r"))
	case errors.Is(err, io.EOF) || errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("the first line is longer than %d octets", passwordMax)
	default:
		return nil, err
	}
	return bytes.Clone(line), nil
}

// derive makes the TSIG secret from a password (secret.Version).
func derive(password []byte, name, algorithm string) ([]byte, error) {
	return secret.DeriveTSIG(password, name, algorithm)
}
