// Package pb holds the messages of CRIU's image files, and of cryo's own,
// as plain Go structs with their protobuf encoding. The code is generated
// by ./gen from go-criu's descriptors of CRIU's .proto files, keeping
// go-criu's Go names and getters; but where go-criu makes every proto2
// scalar a pointer, a required one here is a plain value, always encoded
// (decoding checks it was there), and only an optional one a pointer, nil
// when unset: a restore of 60,000 mappings holds 60,000 VMA records, and
// each pointer was an allocation. cryo does not link the protobuf runtime,
// whose registration of every image message cost each start about 5 ms
// and 3 MiB.
package pb

//go:generate go run ./gen -o .
