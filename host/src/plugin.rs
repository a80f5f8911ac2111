//! WebAssembly plugin runtime. Stub until the runtime lands.
