// A Java program that counts: a thread prints "tick N pid=P n=N ok"
// every 50 ms, and a server on 127.0.0.1:PORT (args[0]) answers each
// line a client sends with the count, a thread per connection.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.atomic.AtomicLong;

public class Counter {
    static final AtomicLong count = new AtomicLong();

    public static void main(String[] args) throws Exception {
        ServerSocket server = new ServerSocket(Integer.parseInt(args[0]), 16, InetAddress.getLoopbackAddress());
        long pid = ProcessHandle.current().pid();
        System.out.println("ready");
        System.out.flush();
        Thread ticker = new Thread(() -> {
            try {
                for (;;) {
                    long n = count.incrementAndGet();
                    System.out.println("tick " + n + " pid=" + pid + " n=" + n + " ok");
                    System.out.flush();
                    Thread.sleep(50);
                }
            } catch (InterruptedException e) {
                System.out.println("FAIL interrupted");
                System.out.flush();
            }
        });
        ticker.start();
        for (;;) {
            Socket c = server.accept();
            new Thread(() -> serve(c)).start();
        }
    }

    static void serve(Socket c) {
        try (c) {
            BufferedReader in = new BufferedReader(new InputStreamReader(c.getInputStream()));
            PrintWriter out = new PrintWriter(c.getOutputStream(), true);
            for (String line; (line = in.readLine()) != null; ) {
                out.println(line + " n=" + count.get());
            }
        } catch (Exception e) {
            System.out.println("FAIL connection: " + e);
            System.out.flush();
        }
    }
}
