// pgjdbc (Debian's libpostgresql-jdbc-java) against `journeydb serve`: connect-time queries,
// DatabaseMetaData introspection, parameters with quotes, and paged fetching (setFetchSize uses
// Execute row limits and PortalSuspended). Usage: java -cp postgresql.jar Jdbc.java PORT PASSWORD
import java.sql.*;
import java.util.*;

public class Jdbc {
    static int checks = 0;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        checks++;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/journeydb";
        try (Connection c = DriverManager.getConnection(url, "u", args[1])) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS drv_jdbc");
                s.execute("CREATE TABLE drv_jdbc (customer_id VARCHAR PRIMARY KEY, v VARCHAR MERGE LAST, n BIGINT MERGE SUM)");
            }
            String[] nasty = {"O'Brien", "q', 999), ('evil', 'x", "-- x", "/* y */", "back\\slash", "unicode é 日本"};
            try (PreparedStatement p = c.prepareStatement("INSERT INTO drv_jdbc VALUES (?, ?, ?)")) {
                for (int i = 0; i < 50; i++) {
                    p.setString(1, String.format("k%02d", i));
                    p.setString(2, nasty[i % nasty.length]);
                    p.setLong(3, -i);
                    p.executeUpdate();
                }
            }
            try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM drv_jdbc WHERE v = ?")) {
                for (String v : nasty) {
                    p.setString(1, v);
                    try (ResultSet r = p.executeQuery()) {
                        r.next();
                        check(r.getLong(1) >= 8, "jdbc: WHERE v = ? matches " + v);
                    }
                }
            }
            DatabaseMetaData md = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet r = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) tables.add(r.getString("TABLE_NAME"));
            }
            check(tables.contains("drv_jdbc"), "jdbc: getTables lists drv_jdbc " + tables);
            List<String> cols = new ArrayList<>();
            try (ResultSet r = md.getColumns(null, "public", "drv_jdbc", "%")) {
                while (r.next()) cols.add(r.getString("COLUMN_NAME") + ":" + r.getString("TYPE_NAME"));
            }
            check(cols.equals(List.of("customer_id:varchar", "v:varchar", "n:int8")), "jdbc: getColumns " + cols);
            // Paged fetching: autocommit off and a fetch size make the driver page with portals.
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("SELECT customer_id FROM drv_jdbc ORDER BY customer_id")) {
                p.setFetchSize(7);
                int rows = 0;
                try (ResultSet r = p.executeQuery()) {
                    while (r.next()) rows++;
                }
                check(rows == 50, "jdbc: setFetchSize(7) returns all 50 rows, got " + rows);
            }
            c.commit();
        }
        System.out.println("jdbc: " + checks + " checks passed");
    }
}
