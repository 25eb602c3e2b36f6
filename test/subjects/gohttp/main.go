// Command gohttp is a checkpoint/restore subject: a Go HTTP/1.1 server
// on 127.0.0.1:PORT, listening as Go programs do since Go 1.24 (MPTCP,
// which a TCP client's connection falls back from), a goroutine per
// connection. It answers "request N path P" and prints "ready" once it
// listens.
//
// Usage: gohttp PORT
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Println("FAIL usage: gohttp PORT")
		os.Exit(1)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	var n atomic.Int64
	fmt.Println("ready")
	err = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "request %d path %s\n", n.Add(1), r.URL.Path)
	}))
	fmt.Println("FAIL", err)
	os.Exit(1)
}
