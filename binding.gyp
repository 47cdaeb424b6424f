{
  "targets": [
    {
      "target_name": "virtiofsd_native",
      "sources": [
        "bindings/addon.c",
        "bindings/socket.c",
        "bindings/mman.c",
        "bindings/eventfd.c",
        "bindings/poller.c",
        "bindings/io-pool.c",
        "bindings/closer.c",
        "bindings/fsat.c",
        "bindings/handle.c",
        "bindings/creds.c",
        "bindings/fuse-dev.c",
        "bindings/sandbox.c",
        "bindings/seccomp.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration"],
      "libraries": ["-lpthread"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    },
    {
      "target_name": "virtiofsd-ts-sandbox",
      "type": "executable",
      "sources": ["bindings/sandbox-helper.c"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
