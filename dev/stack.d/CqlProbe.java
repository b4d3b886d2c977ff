// Minimal CQL native-protocol v4 client used by dev/stack to prove Cassandra answers queries.
// No dependencies (no cqlsh, no driver): plain socket, STARTUP then QUERY, prints the first
// column of the first row as text (or "ok" for non-row results).
// Usage: java CqlProbe HOST:PORT TIMEOUT_MS "CQL" ["CQL" ...]   exit 0 = every statement answered.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;

public final class CqlProbe {
    private static DataInputStream in;
    private static DataOutputStream out;
    private static short stream = 0;

    public static void main(String[] args) throws Exception {
        if (args.length < 3) { System.err.println("usage: CqlProbe HOST:PORT TIMEOUT_MS CQL..."); System.exit(2); }
        String[] hp = args[0].split(":");
        int timeout = Integer.parseInt(args[1]);
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), timeout);
            s.setSoTimeout(timeout);
            in = new DataInputStream(new BufferedInputStream(s.getInputStream()));
            out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream()));
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            DataOutputStream d = new DataOutputStream(b);
            d.writeShort(1); str(d, "CQL_VERSION"); str(d, "3.0.0");
            DataInputStream r = request(0x01, b.toByteArray());
            if (lastOpcode != 0x02) fail("STARTUP answered opcode " + lastOpcode);
            for (int i = 2; i < args.length; i++) {
                b.reset();
                byte[] q = args[i].getBytes(StandardCharsets.UTF_8);
                d.writeInt(q.length); d.write(q); d.writeShort(0x0001 /* ONE */); d.writeByte(0);
                r = request(0x07, b.toByteArray());
                if (lastOpcode != 0x08) fail("QUERY answered opcode " + lastOpcode);
                System.out.println(result(r));
            }
        }
    }

    private static int lastOpcode;

    private static DataInputStream request(int opcode, byte[] body) throws IOException {
        out.writeByte(0x04); out.writeByte(0); out.writeShort(++stream); out.writeByte(opcode);
        out.writeInt(body.length); out.write(body); out.flush();
        int version = in.readUnsignedByte(); in.readUnsignedByte(); in.readShort();
        lastOpcode = in.readUnsignedByte();
        byte[] rb = new byte[in.readInt()];
        in.readFully(rb);
        if ((version & 0x7f) != 4) fail("server answered protocol version " + (version & 0x7f));
        DataInputStream r = new DataInputStream(new ByteArrayInputStream(rb));
        if (lastOpcode == 0x00) { int code = r.readInt(); fail(String.format("server error 0x%04x: %s", code, rstr(r))); }
        return r;
    }

    private static String result(DataInputStream r) throws IOException {
        int kind = r.readInt();
        if (kind != 2) return "ok";
        int flags = r.readInt(), cols = r.readInt();
        if ((flags & 0x0002) != 0) { int n = r.readInt(); r.skipBytes(n); }
        if ((flags & 0x0004) != 0) fail("no metadata");
        boolean global = (flags & 0x0001) != 0;
        if (global) { rstr(r); rstr(r); }
        for (int c = 0; c < cols; c++) {
            if (!global) { rstr(r); rstr(r); }
            rstr(r);
            skipType(r);
        }
        int rows = r.readInt();
        if (rows == 0 || cols == 0) return "(no rows)";
        int n = r.readInt();
        if (n < 0) return "null";
        byte[] v = new byte[n]; r.readFully(v);
        return new String(v, StandardCharsets.UTF_8);
    }

    private static void skipType(DataInputStream r) throws IOException {
        int id = r.readUnsignedShort();
        switch (id) {
            case 0x0000: rstr(r); break;                          // custom
            case 0x0020: case 0x0022: skipType(r); break;          // list, set
            case 0x0021: skipType(r); skipType(r); break;          // map
            case 0x0030: rstr(r); rstr(r); { int n = r.readUnsignedShort(); for (int i = 0; i < n; i++) { rstr(r); skipType(r); } } break; // udt
            case 0x0031: { int n = r.readUnsignedShort(); for (int i = 0; i < n; i++) skipType(r); } break; // tuple
            default: break;
        }
    }

    private static void str(DataOutputStream d, String s) throws IOException {
        byte[] b = s.getBytes(StandardCharsets.UTF_8); d.writeShort(b.length); d.write(b);
    }

    private static String rstr(DataInputStream r) throws IOException {
        byte[] b = new byte[r.readUnsignedShort()]; r.readFully(b); return new String(b, StandardCharsets.UTF_8);
    }

    private static void fail(String msg) { System.err.println("CqlProbe: " + msg); System.exit(1); }
}
